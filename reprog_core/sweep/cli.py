"""``python -m reprog_core sweep``: progress per point on stderr, a summary table on stdout.

Exit codes: 0 every point computed (or stored); 1 some point failed (the others are still
written); 2 a bad flag or grid value (nothing runs); 130 interrupted (finished points written).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from reprog_core.config_args import config_from_args
from reprog_core.figures.theme import fmt
from reprog_core.results import SweepRecord, json_safe
from reprog_core.sweep.executors import PointOutcome
from reprog_core.sweep.grid import SweepGridError, build_grid
from reprog_core.sweep.report import SUMMARY_HEAD, summary_table_rows
from reprog_core.sweep.runner import run_sweep

EXIT_OK, EXIT_FAILED = 0, 1


def _fmt_point(out: PointOutcome, done: int, total: int) -> str:
    cfg = out.config
    head = (
        f"[{done:>{len(str(total))}}/{total}] depth {cfg.depth} {cfg.transform:<6} seed {cfg.seed}"
    )
    if not out.ok:
        return f"{head}  FAILED  {out.error}"
    assert out.result is not None
    r = out.result.sweep_row()
    return (
        f"{head}  {out.cache:<8} {out.seconds:6.1f} s  source {100 * r['source_test_acc']:5.1f}%"
        f"  target {100 * r['target_test_acc']:5.1f}%  λ_min {fmt(r['lambda_min'], 3):>9}"
        f"  eff. rank {fmt(r['effective_rank'], 3):>6}"
    )


def _print_table(head: list[str], body: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[j]) for r in body)) if body else len(h) for j, h in enumerate(head)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def check_out_folder(out: str) -> Path:
    """Create ``out`` and prove it writable (a probe file, removed at once) before any point is
    computed; ``SweepGridError`` (one line, exit 2) when it is not."""
    folder = Path(out).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SweepGridError(f"--out {out}: cannot write the results there ({reason})") from None
    return folder


def main_from_args(args: argparse.Namespace) -> int:
    """Run the sweep the CLI flags describe (``reprog_core.cli`` parses them)."""
    if args.address and args.executor != "ray":
        raise SweepGridError("--address is the Ray cluster to use: it needs --executor ray")
    base = config_from_args(args)
    grid = build_grid(
        base, preset=args.preset, depths=args.depths, transforms=args.transforms, seeds=args.seeds
    )
    check_out_folder(args.out)  # before hours of computing, not after
    as_json = bool(getattr(args, "json", False))
    live = sys.stderr.isatty() and not as_json
    weights = base.weights_label
    source = (
        f"{base.source_family} (pretrained classifier)"
        if base.is_pretrained_classifier
        else f"{base.source_family} on {base.source_data}"
    )
    sys.stderr.write(
        f"sweep: {grid.describe()}, {source} -> {base.target}"
        f" (weights: {weights}), executor {args.executor}, out {args.out}\n"
    )
    if weights == "random":
        sys.stderr.write(f"note: {base.weights_model} has RANDOM weights (not pretrained)\n")
    if base.is_pretrained_classifier and len(grid.depths) > 1:
        sys.stderr.write(
            f"note: {base.source_family} is used as it is: its points at different depths are "
            "the same experiment\n"
        )
    from reprog_core.source_model.training import budget_warnings  # lazy: imports torch

    for warning in budget_warnings(base):  # before the sources train, not after
        sys.stderr.write(f"warning: {warning}\n")

    def on_stage(index: int, fraction: float, stage: str) -> None:
        if live:
            sys.stderr.write(f"\r  point {index + 1}: {stage[:60]:<60} {100 * fraction:5.1f}%")
            sys.stderr.flush()

    def on_point(out: PointOutcome, done: int, total: int) -> None:
        if live:
            sys.stderr.write("\r" + " " * 80 + "\r")
        sys.stderr.write(_fmt_point(out, done, total) + "\n")
        sys.stderr.flush()

    command = "python -m reprog_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    sweep = run_sweep(
        grid,
        args.out,
        executor=args.executor,
        address=args.address,
        device=args.device,
        stat=getattr(args, "stat", "lambda_min"),
        on_point=on_point,
        on_stage=on_stage,
        command=command,
    )
    _report(sweep, as_json)
    return EXIT_FAILED if sweep.n_failed else EXIT_OK


def _report(sweep: SweepRecord, as_json: bool) -> None:
    if as_json:
        keep = (
            "grid",
            "weights",
            "executor",
            "elapsed_s",
            "n_done",
            "n_failed",
            "cache_counts",
            "files",
            "summary",
            "correlations",
            "claims",
            "points",
        )
        print(json.dumps(json_safe({k: getattr(sweep, k) for k in keep}), allow_nan=False))
        return
    print(f"summary (mean ± s.d. over seeds), {sweep.weights} weights:")
    _print_table(SUMMARY_HEAD, summary_table_rows(sweep.rows))
    for c in sweep.claims:
        print(f"claim: {c['claim']}: {c['verdict']} ({c['detail']})")
    counts = ", ".join(f"{v} {k}" for k, v in sorted(sweep.cache_counts.items()))
    print(f"{sweep.n_done} points ({counts}) in {sweep.elapsed_s:.1f} s")
    for p in sweep.points:
        if p["error"]:
            print(f"failed: depth {p['depth']} {p['transform']} seed {p['seed']}: {p['error']}")
    files = sweep.files
    if files:
        print("wrote " + ", ".join(files[k] for k in ("csv", "json", "html") if k in files))
