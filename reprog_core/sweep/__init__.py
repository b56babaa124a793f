"""Sweeps: the paper's depth experiment (and any grid like it), run locally or on Ray, reported.

Typical use::

    from reprog_core.config import ExperimentConfig
    from reprog_core.sweep import build_grid, run_sweep, load_results

    grid = build_grid(ExperimentConfig(steps=100), preset="paper-depth")  # 6 x 3 x 3 = 54 points
    record = run_sweep(grid, "sweeps/paper-depth")          # executor="ray", address=... for Ray
    record = load_results("sweeps/paper-depth")             # what the dashboard reads

or ``python -m reprog_core sweep --preset paper-depth --out sweeps/paper-depth``.

Files: ``grid.py`` (presets, axes, validation against the backend's limits), ``executors.py``
(local through the backend's cache; Ray with results written back to the driver's cache),
``report.py`` (``report.html``; its figures are ``reprog_core.figures.sweep``, its statistics
``reprog_core.analysis``: mean / spread over seeds, Spearman's rho, the paper's claims),
``outputs.py`` (the files, ``load_results``: a ``results.SweepRecord``), ``runner.py``
(``run_sweep``), ``cli.py`` (the ``sweep`` command).

Output folder (``--out``)
-------------------------
``results.csv``: one line per successful point; the columns of ``results.json``'s ``columns``;
an empty cell is a missing value (NaN).

``results.json`` (strict JSON, ``null`` for NaN; ``load_results`` turns numeric nulls back into
NaN). One object::

    format          "reprog-sweep"          format_version  1
    created         local time, ISO 8601    finished        false if interrupted (partial)
    command         the CLI command line, or null
    preset          "paper-depth" or null   grid    {preset, depths, transforms, seeds, n_points}
    config          the base ExperimentConfig (to_dict); each point replaces depth/transform/seed
    weights         "none" (pixel model), "random" (random CLIP weights), a tag or a file path
    executor        "local" | "ray"         versions {reprog_core, code, data, torch, [open_clip,
                                                      ray]}
    machine         {platform, python, cpu_count, torch_threads, cuda, gpus}
    elapsed_s, n_done, n_failed, cache_counts {"computed"|"joined"|"hit"|"failed": count}
    columns         row keys, in order
    rows            one per successful point: ExperimentRecord.sweep_row() (the columns
                    results.ROW_COLUMNS: the config fields config.ROW_FIELDS, weights, source,
                    target and baseline accuracy, the spectrum's statistics, the kernel's
                    regression accuracy and input-independent share, n_params_transform,
                    stopped, kernel_loss_drop, kernel_drift, agree_until)
                    + point (grid index), key (backend cache key), cache, executor, seconds
                    (wall time of this run), fit_seconds and kernel_seconds (compute time when
                    the point was computed)
    points          one per grid point done or failed: {index, depth, transform, seed, key,
                    cache ("computed"|"joined"|"hit", null if failed), executor, seconds, error}
    summary         per (transform, depth): n_seeds and <metric>_{mean,std,min,max} for
                    source_test_acc, target_test_acc, baseline_test_acc, lambda_min,
                    effective_rank, alignment, condition_number (std: sample s.d., ddof 1)
    correlations    [{stat, group ("all" or a transform), n, rho, p}]: Spearman's rho of each
                    spectral statistic with target_test_acc (scipy.stats.spearmanr, two-sided p)
    claims          [{claim, test, n, statistic, p, verdict, detail}]: the paper's depth claims
                    tested (analysis.paper_claims); verdict 'holds' | 'reversed' | 'not shown' |
                    'n/a' at alpha = 0.05

Accuracies are fractions in [0, 1]. Spectral statistics are those of the target NTK w.r.t. θ at
θ_0 on ``n_kernel`` target samples, in the config's ``kernel_form``.

``report.html``: the same record as one self-contained page (plotly.js inlined once).
"""

from reprog_core.analysis import correlations, paper_claims, spearman, spread, summarise
from reprog_core.sweep.cli import main_from_args
from reprog_core.sweep.executors import LocalExecutor, PointOutcome, RayExecutor, store_result
from reprog_core.sweep.grid import (
    PRESETS,
    SWEEP_TASK,
    Preset,
    SweepGrid,
    SweepGridError,
    build_grid,
    grid_points,
    list_presets,
    warm_items,
)
from reprog_core.sweep.outputs import load_results, write_results
from reprog_core.sweep.report import build_report
from reprog_core.sweep.runner import build_record, run_sweep, write_outputs

__all__ = [
    "PRESETS",
    "SWEEP_TASK",
    "LocalExecutor",
    "PointOutcome",
    "Preset",
    "RayExecutor",
    "SweepGrid",
    "SweepGridError",
    "build_grid",
    "grid_points",
    "build_record",
    "build_report",
    "correlations",
    "list_presets",
    "load_results",
    "main_from_args",
    "paper_claims",
    "run_sweep",
    "spearman",
    "spread",
    "store_result",
    "warm_items",
    "summarise",
    "write_outputs",
    "write_results",
]
