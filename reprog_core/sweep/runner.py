"""``run_sweep``: a grid through an executor into the results files and the report."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reprog_core.analysis import correlations, paper_claims, summarise
from reprog_core.results import SweepRecord
from reprog_core.sweep.executors import (
    Executor,
    LocalExecutor,
    OnPoint,
    OnStage,
    PointOutcome,
    RayExecutor,
)
from reprog_core.sweep.grid import SweepGrid
from reprog_core.sweep.outputs import (
    FORMAT,
    FORMAT_VERSION,
    REPORT_HTML,
    _atomic_write_text,
    columns_of,
    machine_info,
    write_results,
)
from reprog_core.sweep.report import build_report

EXECUTORS = ("local", "ray")


def make_executor(
    name: str,
    backend: Any = None,
    address: str | None = None,
    device: str | None = None,
) -> Executor:
    """'local' or 'ray' (``address`` only for Ray)."""
    if name == "local":
        return LocalExecutor(backend=backend, device=device)
    if name == "ray":
        return RayExecutor(backend=backend, address=address, device=device)
    raise ValueError(f"executor must be one of {EXECUTORS}, got {name!r}")


def point_row(out: PointOutcome) -> dict[str, Any]:
    """The table row of a finished point: ``ExperimentRecord.sweep_row`` plus where it came
    from and what it cost."""
    assert out.result is not None
    kernel = out.result.kernel
    return {
        **out.result.sweep_row(),
        "point": out.index,
        "key": out.key,
        "cache": out.cache,
        "executor": out.executor,
        "seconds": round(out.seconds, 3),
        # What computing the point cost when it was computed (stored with it, so a resumed
        # sweep's rows still say it): the fit, and the target NTK with its spectrum.
        "fit_seconds": out.result.fit.seconds,
        "kernel_seconds": kernel.seconds if kernel is not None else None,
    }


def build_record(
    grid: SweepGrid,
    outcomes: Sequence[PointOutcome],
    *,
    executor: str,
    finished: bool,
    elapsed_s: float,
    command: str | None = None,
) -> SweepRecord:
    """The ``results.json`` record of a (possibly partial) sweep; see the package docstring."""
    from reprog_core.pipeline import versions  # lazy: the pipeline imports torch

    outcomes = sorted(outcomes, key=lambda o: o.index)
    rows = [point_row(o) for o in outcomes if o.ok]
    vers = versions(grid.base)
    if executor == "ray":
        import importlib.metadata

        vers["ray"] = importlib.metadata.version("ray")
    cache_counts: dict[str, int] = {}
    for o in outcomes:
        k = o.cache or "failed"
        cache_counts[k] = cache_counts.get(k, 0) + 1
    return SweepRecord(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        finished=finished,
        command=command,
        preset=grid.preset,
        grid=grid.to_dict(),
        config=grid.base,
        weights=grid.base.weights_label,
        executor=executor,
        versions=vers,
        machine=machine_info(),
        elapsed_s=round(elapsed_s, 3),
        n_done=len(outcomes),
        n_failed=sum(not o.ok for o in outcomes),
        cache_counts=cache_counts,
        columns=columns_of(rows),
        rows=rows,
        points=[o.to_dict() for o in outcomes],
        summary=summarise(rows),
        correlations=[c.to_dict() for c in correlations(rows)],
        claims=[c.to_dict() for c in paper_claims(rows)],
    )


def write_outputs(
    sweep: SweepRecord, out: str | os.PathLike[str], stat: str = "lambda_min"
) -> dict[str, Path]:
    """``results.json``, ``results.csv`` and ``report.html`` into ``out``; returns their paths."""
    paths = write_results(sweep, out)
    paths["html"] = Path(out) / REPORT_HTML
    _atomic_write_text(paths["html"], build_report(sweep, stat))
    return paths


def run_sweep(
    grid: SweepGrid,
    out: str | os.PathLike[str] | None = None,
    *,
    executor: str | Executor = "local",
    backend: Any = None,
    address: str | None = None,
    device: str | None = None,
    stat: str = "lambda_min",
    on_point: OnPoint | None = None,
    on_stage: OnStage | None = None,
    command: str | None = None,
) -> SweepRecord:
    """Compute every point of ``grid`` and return the sweep record; with ``out``, also write
    ``results.json``, ``results.csv`` and ``report.html`` there.

    ``executor``: 'local' (through ``backend``, default ``default_backend()``), 'ray' (``address``
    of a cluster, or a local instance), or an executor object. Interrupted (Ctrl-C), it still
    writes the points finished so far (``finished: false``) before re-raising, and the same call
    later resumes: stored points come back as 'hit'.
    """
    ex = (
        make_executor(executor, backend, address, device) if isinstance(executor, str) else executor
    )
    outcomes: list[PointOutcome] = []
    t0 = time.perf_counter()
    finished = False
    try:
        ex.run(grid.points(), on_point=on_point, on_stage=on_stage, outcomes=outcomes)
        finished = True
    finally:
        sweep = build_record(
            grid,
            outcomes,
            executor=ex.name,
            finished=finished,
            elapsed_s=time.perf_counter() - t0,
            command=command,
        )
        if out is not None and (outcomes or finished):
            sweep.files = {k: str(v) for k, v in write_outputs(sweep, out, stat).items()}
    return sweep
