"""What the download buttons hand out: CSV and JSON of results, with no Streamlit.

Each CSV starts with ``#`` comment lines that make it self-describing on its own (weights label,
seed, cache key, versions and the whole config as JSON); ``pandas.read_csv(path, comment='#')``
reads it. The JSON is the result record as the backend stores it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]


def _header(result: Result, what: str) -> list[str]:
    cfg = result.get("config") or {}
    lines = [
        f"# {what}",
        f"# weights: {result.get('weights', cfg.get('weights'))}"
        + (
            "  (RANDOM backbone initialisation, not pretrained)"
            if result.get("weights") == "random"
            else ""
        ),
        f"# seed: {cfg.get('seed')}",
        f"# key: {result.get('key', '')}",
        f"# versions: {json.dumps(result.get('versions') or {}, sort_keys=True)}",
        f"# config: {json.dumps(dict(cfg), sort_keys=True)}",
    ]
    return lines


def _csv(header: list[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    for line in header:
        buf.write(line + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def eigenvalues_csv(result: Result) -> str:
    """The target NTK's eigenvalues (descending) of an explore / ntk result."""
    kernel = (
        result.get("kernel")
        if "kernel" in result and isinstance(result.get("kernel"), dict)
        else result
    )
    kernel = kernel or {}
    stats = kernel.get("stats") or {}
    tol = stats.get("rank_tol") or 0.0
    what = (
        f"eigenvalues of the {'source' if kernel.get('wrt') == 'source' else 'target'} NTK, "
        f"{kernel.get('kernel')} form, N = {kernel.get('n')}, P = {kernel.get('n_params')}, "
        f"rank tolerance {tol}"
    )
    rows = [
        (i + 1, repr(float(v)), int(v > tol)) for i, v in enumerate(stats.get("eigenvalues") or [])
    ]
    return _csv(_header(result, what), ["index", "eigenvalue", "above_tolerance"], rows)


def curves_csv(result: Result) -> str:
    """The fit's curves, one row per step, with the NTK-predicted loss where it is defined.

    Columns: step, train_loss, train_acc (per batch), test_acc and kernel_loss (at evaluation
    steps, empty elsewhere), ntk_predicted_loss (at the prediction's steps).
    """
    fit = result.get("fit") or result
    curves = fit.get("curves") or {}
    kernel = result.get("kernel") or {}
    dyn = kernel.get("dynamics") or {}
    table: dict[int, dict[str, Any]] = {}
    for s, loss, acc in zip(
        curves.get("step", []), curves.get("train_loss", []), curves.get("train_acc", [])
    ):
        table.setdefault(int(s), {}).update(train_loss=loss, train_acc=acc)
    for s, acc, kl in zip(
        curves.get("eval_step", []), curves.get("test_acc", []), curves.get("kernel_loss", [])
    ):
        table.setdefault(int(s), {}).update(test_acc=acc, kernel_loss=kl)
    for s, loss in zip(dyn.get("step", []), dyn.get("loss", [])):
        table.setdefault(int(s), {}).update(ntk_predicted_loss=loss)
    columns = ["step", "train_loss", "train_acc", "test_acc", "kernel_loss", "ntk_predicted_loss"]
    rows = [[s, *(table[s].get(c, "") for c in columns[1:])] for s in sorted(table)]
    cfg = result.get("config") or {}
    what = (
        f"reprogramming fit curves (optimizer {cfg.get('optimizer')}, loss {cfg.get('loss')}); "
        "kernel_loss = squared loss on the kernel samples; ntk_predicted_loss = its NTK "
        "prediction (full-batch gradient descent on squared loss)"
    )
    return _csv(_header(result, what), columns, rows)


def rows_csv(rows: Sequence[Mapping[str, Any]], what: str) -> str:
    """A table of summary rows (``pipeline.sweep_row`` dicts), one line per result."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    return _csv([f"# {what}"], columns, [[r.get(c, "") for c in columns] for r in rows])


def result_json(result: Any) -> str:
    """A result record (or a list of them) as indented JSON; NaN stays NaN as Python writes it."""
    return json.dumps(result, indent=1, sort_keys=True, default=str)
