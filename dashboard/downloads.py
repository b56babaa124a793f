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
    """The fit's curves, one row per step: what the fit figure draws.

    Columns: step, train_loss, train_acc (per batch), test_acc and kernel_loss (at evaluation
    steps, empty elsewhere). A kernel-regime fit (the only one the page draws a prediction for)
    adds kernel_loss at every step of its record, ntk_predicted_loss (up to the step where it
    agrees with the fit, as drawn), and both with each output's mean residual over the N kernel
    samples removed: kernel_loss_offset_free, ntk_predicted_loss_offset_free. A practical fit
    has no prediction column: its kernel record's predicted curve (another loss, optimizer and
    step size) is not drawn, and is in the JSON only.
    """
    fit = result.get("fit") or result
    curves = fit.get("curves") or {}
    kr = fit.get("kernel_regime") or {}
    table: dict[int, dict[str, Any]] = {}
    for s, loss, acc in zip(
        curves.get("step", []), curves.get("train_loss", []), curves.get("train_acc", [])
    ):
        table.setdefault(int(s), {}).update(train_loss=loss, train_acc=acc)
    for s, acc, kl in zip(
        curves.get("eval_step", []), curves.get("test_acc", []), curves.get("kernel_loss", [])
    ):
        table.setdefault(int(s), {}).update(test_acc=acc, kernel_loss=kl)
    columns = ["step", "train_loss", "train_acc", "test_acc", "kernel_loss"]
    cfg = result.get("config") or fit.get("config") or {}
    what = (
        f"reprogramming fit curves (optimizer {cfg.get('optimizer')}, loss {cfg.get('loss')}); "
        "kernel_loss = squared loss on the kernel samples"
    )
    if kr.get("steps"):
        until = kr.get("agree_until")
        steps = [int(t) for t in kr["steps"]]
        free = kr.get("measured_loss_offset_free") or []
        pred_free = kr.get("predicted_loss_offset_free") or []
        for i, t in enumerate(steps):
            row = table.setdefault(t, {})
            row["kernel_loss"] = kr["measured_loss"][i]
            if i < len(free):
                row["kernel_loss_offset_free"] = free[i]
            if until is not None and t <= until:
                row["ntk_predicted_loss"] = kr["predicted_loss"][i]
                if i < len(pred_free):
                    row["ntk_predicted_loss_offset_free"] = pred_free[i]
        columns += ["ntk_predicted_loss"]
        if free:
            columns += ["kernel_loss_offset_free", "ntk_predicted_loss_offset_free"]
        what += (
            " (kernel regime: at every step); ntk_predicted_loss = its NTK prediction from the "
            "full kernel at theta_0, up to the last step within "
            f"{kr.get('agreement_tol', 0.1):.0%} of it ({until}), as the page draws it; "
            "*_offset_free = the same with each output's mean residual over the N samples "
            "removed"
        )
    rows = [[s, *(table[s].get(c, "") for c in columns[1:])] for s in sorted(table)]
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
