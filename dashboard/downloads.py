"""What the download buttons hand out: CSV and JSON of results, with no Streamlit.

Each CSV starts with ``#`` comment lines that make it self-describing on its own (weights label,
seed, cache key, versions and the whole config as JSON); ``pandas.read_csv(path, comment='#')``
reads it. The JSON is the result record as the backend stores it (``Record.to_dict``), with its
cache key. The results are typed records (``reprog_core.results``), read by attribute.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from reprog_core.results import ExperimentRecord, FitResult, KernelRegime, KernelResult, Record


def _header(record: ExperimentRecord | KernelResult | FitResult, what: str, key: str) -> list[str]:
    """The comment lines that say what a CSV holds and what it was computed from."""
    random = (
        "  (RANDOM backbone initialisation, not pretrained)" if record.weights == "random" else ""
    )
    return [
        f"# {what}",
        f"# weights: {record.weights}{random}",
        f"# seed: {record.config.seed}",
        f"# key: {key}",
        f"# versions: {json.dumps(record.versions, sort_keys=True)}",
        f"# config: {json.dumps(record.config.to_dict(), sort_keys=True)}",
    ]


def _csv(header: list[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    for line in header:
        buf.write(line + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def eigenvalues_csv(record: ExperimentRecord | KernelResult, key: str = "") -> str:
    """The target NTK's eigenvalues (descending) of an explore record or a kernel record (an
    explore record with no kernel, transform 'none', gives the header and no rows)."""
    kernel = record.kernel if isinstance(record, ExperimentRecord) else record
    rows: list[tuple[int, str, int]] = []
    what = "no kernel (transform 'none' has no trainable parameters)"
    if kernel is not None:
        tol = kernel.stats.rank_tol or 0.0
        what = (
            f"eigenvalues of the {'source' if kernel.wrt == 'source' else 'target'} NTK, "
            f"{kernel.kernel} form, N = {kernel.n}, P = {kernel.n_params}, "
            f"rank tolerance {tol}"
        )
        rows = [
            (i + 1, repr(float(v)), int(v > tol)) for i, v in enumerate(kernel.stats.eigenvalues)
        ]
    return _csv(_header(record, what, key), ["index", "eigenvalue", "above_tolerance"], rows)


def curves_csv(record: ExperimentRecord | FitResult, key: str = "") -> str:
    """The fit's curves, one row per step: what the fit figure draws.

    Columns: step, train_loss, train_acc (per batch), test_acc and kernel_loss (at evaluation
    steps, empty elsewhere). A kernel-regime fit (the only one the page draws a prediction for)
    adds kernel_loss at every step of its record, ntk_predicted_loss (up to the step where it
    agrees with the fit, as drawn), and both with each output's mean residual over the N kernel
    samples removed: kernel_loss_offset_free, ntk_predicted_loss_offset_free. A practical fit
    has no prediction column: its kernel record's predicted curve (another loss, optimizer and
    step size) is not drawn, and is in the JSON only.
    """
    fit = record.fit if isinstance(record, ExperimentRecord) else record
    table = _measured_curves(fit)
    columns = ["step", "train_loss", "train_acc", "test_acc", "kernel_loss"]
    what = (
        f"reprogramming fit curves (optimizer {fit.config.optimizer}, loss {fit.config.loss}); "
        "kernel_loss = squared loss on the kernel samples"
    )
    kr = fit.kernel_regime
    if kr is not None and kr.steps:
        columns += _add_kernel_regime(table, kr)
        what += (
            " (kernel regime: at every step); ntk_predicted_loss = its NTK prediction from the "
            "full kernel at theta_0, up to the last step within "
            f"{kr.agreement_tol:.0%} of it ({kr.agree_until}), as the page draws it; "
            "*_offset_free = the same with each output's mean residual over the N samples "
            "removed"
        )
    rows = [[s, *(table[s].get(c, "") for c in columns[1:])] for s in sorted(table)]
    return _csv(_header(record, what, key), columns, rows)


def _measured_curves(fit: FitResult) -> dict[int, dict[str, Any]]:
    """step -> the measured values at that step (training every step, evaluation sparse)."""
    curves = fit.curves
    table: dict[int, dict[str, Any]] = {}
    for s, loss, acc in zip(curves.step, curves.train_loss, curves.train_acc):
        table.setdefault(int(s), {}).update(train_loss=loss, train_acc=acc)
    for s, acc, kl in zip(curves.eval_step, curves.test_acc, curves.kernel_loss):
        table.setdefault(int(s), {}).update(test_acc=acc, kernel_loss=kl)
    return table


def _add_kernel_regime(table: dict[int, dict[str, Any]], kr: KernelRegime) -> list[str]:
    """The kernel regime's losses at each of its steps, the prediction only up to where it agrees
    with the measurement (as drawn); returns the columns it adds."""
    until = kr.agree_until
    free, pred_free = kr.measured_loss_offset_free, kr.predicted_loss_offset_free
    for i, t in enumerate(int(t) for t in kr.steps):
        row = table.setdefault(t, {})
        row["kernel_loss"] = kr.measured_loss[i]
        if i < len(free):
            row["kernel_loss_offset_free"] = free[i]
        if until is not None and t <= until:
            row["ntk_predicted_loss"] = kr.predicted_loss[i]
            if i < len(pred_free):
                row["ntk_predicted_loss_offset_free"] = pred_free[i]
    extra = ["ntk_predicted_loss"]
    if free:
        extra += ["kernel_loss_offset_free", "ntk_predicted_loss_offset_free"]
    return extra


def rows_csv(rows: Sequence[Mapping[str, Any]], what: str) -> str:
    """A table of summary rows (``pipeline.sweep_row`` dicts), one line per result."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    return _csv([f"# {what}"], columns, [[r.get(c, "") for c in columns] for r in rows])


def result_json(records: Record | Sequence[Record], keys: str | Sequence[str] = "") -> str:
    """A record (or a list of them) as indented JSON, as the backend stores it, each with its
    cache key (``keys``: one, or one per record); NaN stays NaN as Python writes it."""
    if isinstance(records, Record):
        return json.dumps(_stored(records, str(keys)), indent=1, sort_keys=True, default=str)
    key_list = [keys] * len(records) if isinstance(keys, str) else list(keys)
    stored = [_stored(r, k) for r, k in zip(records, key_list)]
    return json.dumps(stored, indent=1, sort_keys=True, default=str)


def _stored(record: Record, key: str) -> dict[str, Any]:
    return {**record.to_dict(), **({"key": key} if key else {})}
