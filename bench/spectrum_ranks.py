"""Does a spectral statistic rank the configurations of a saved sweep, once depth is controlled?

For each statistic x transform: Spearman's rho against an outcome, beside the partial Spearman
given depth and the within-depth permutation test, every p-value Holm-Bonferroni adjusted over
the table (``reprog_core.analysis.depth_controlled``).

    python bench/spectrum_ranks.py sweeps/paper-v2-kernel --outcome kernel_loss_drop
    python bench/spectrum_ranks.py sweeps/paper-v2 --outcome target_test_acc
    python bench/spectrum_ranks.py /tmp/sw/depth --outcome target_test_acc --json > ranks.json

The sweep is a folder holding ``results.json`` (what ``python -m reprog_core sweep`` writes),
``rows.json``, ``results.csv`` or ``rows.csv`` (tried in that order), or one such file: a
``.json`` with a list of rows or an object with ``rows``, or a ``.csv`` with one row a line.
Rows are ``ExperimentRecord.sweep_row()`` dicts.

Outcomes: ``target_test_acc``, ``kernel_loss_drop`` (fraction of the squared loss on the kernel
samples gone by the last step: in the kernel regime the loss the fit minimises), ``agree_until``.
Statistics: the scale-free ``lambda_min_over_max`` (λ_min/λ_max), ``effective_rank``,
``alignment``, ``regression_acc`` and ``common_share`` (the last two skipped, with a line saying
so, on sweeps saved before they were recorded), and the scale statistics ``lambda_min``,
``lambda_max``. Prints the table, Spearman's rho of depth alone with the outcome, and the
per-depth means of the outcome and the kernel drift; ``--json`` prints all of it as one object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reprog_core.analysis import (
    DEPTH_CONTROL_STATS,
    DepthControlTable,
    depth_controlled,
    num,
    ordered_transforms,
    spread,
)
from reprog_core.sweep.outputs import RESULTS_CSV, RESULTS_JSON, TEXT_COLUMNS, load_results

OUTCOMES = ("kernel_loss_drop", "target_test_acc", "agree_until")
FOLDER_FILES = (RESULTS_JSON, "rows.json", RESULTS_CSV, "rows.csv")


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a sweep CSV: text columns as text, every other cell a float (empty: NaN)."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in rec.items():
                if k in TEXT_COLUMNS:
                    row[k] = v if v != "" else None
                elif v is None or v == "":
                    row[k] = math.nan
                else:
                    try:
                        row[k] = float(v)
                    except ValueError:
                        row[k] = v
            rows.append(row)
    return rows


def load_rows(path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """The sweep rows at ``path`` (a folder or a file; see the module docstring) and the file
    they came from. Raises ``FileNotFoundError`` when there is none."""
    p = Path(path)
    if p.is_dir():
        found = next((p / f for f in FOLDER_FILES if (p / f).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"no sweep rows in {p} (looked for {', '.join(FOLDER_FILES)})")
        p = found
    if not p.is_file():
        raise FileNotFoundError(f"no sweep rows at {p}")
    if p.suffix == ".csv":
        return _csv_rows(p), p
    data = json.loads(p.read_text(encoding="utf-8"))
    if isinstance(data, dict) and data.get("format") == "reprog-sweep":
        return list(load_results(p).rows), p
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError(f"{p} holds neither a list of rows nor an object with 'rows'")
    return [dict(r) for r in rows], p


def _depth_key(v: Any) -> float:
    x = num(v)
    return x if math.isfinite(x) else math.inf


def per_depth(rows: Sequence[dict[str, Any]], outcome: str, control: str) -> list[dict[str, Any]]:
    """Mean and s.d. over seeds of the outcome and the kernel drift, per transform x depth."""
    out = []
    for t in ordered_transforms(rows):
        pts_t = [r for r in rows if str(r["transform"]) == t]
        for d in sorted({_depth_key(r.get(control)) for r in pts_t}):
            pts = [r for r in pts_t if _depth_key(r.get(control)) == d]
            o, k = spread(r.get(outcome) for r in pts), spread(r.get("kernel_drift") for r in pts)
            out.append(
                {
                    "transform": t,
                    control: d,
                    "n": len(pts),
                    f"{outcome}_mean": o.mean,
                    f"{outcome}_std": o.std,
                    "kernel_drift_mean": k.mean,
                    "kernel_drift_std": k.std,
                }
            )
    return out


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None or not math.isfinite(v) else format(v, fmt)


def _tests_line(table: DepthControlTable) -> str:
    exact = "exact over every within-depth permutation where there are at most 100,000"
    return (
        "Tests: ρ = plain Spearman; partial = Spearman with the ranks of "
        f"{table.control} partialled out, p from t with n − 3 df; within = mean of the "
        f"per-{table.control} Spearman rhos (weighted by points; {table.control}s with 3+ points), "
        f"permutation p shuffling the outcome within {table.control} ({exact}, else "
        f"{table.n_perm} random ones, seed {table.seed})."
    )


def print_table(table: DepthControlTable, source: Path, per: list[dict[str, Any]]) -> None:
    c = table.control
    forms = ", ".join(table.kernel_forms) or "unknown"
    levels = ", ".join(f"{v:g}" for v in table.control_values) or "none"
    print(
        f"{table.n_rows} points from {source}; outcome {table.outcome}; kernel form {forms} "
        f"(the spectral statistics are of that kernel); {c}: {levels}"
    )
    print(_tests_line(table))
    print(
        f"Correction: {table.correction} over a family of {table.family_size} tests: "
        f"every p in this table (plain, partial and within, every statistic x group); "
        f"pH = Holm-adjusted p; verdict from the {c}-controlled tests at pH < {table.alpha}."
    )
    print(
        "Scale statistics (absolute eigenvalues: with η = ρN/λ_max the linearised decrease is "
        "scale-free, so these rank the kernel's scale): lambda_min, lambda_max. "
        "condition_number is left out: it ranks as lambda_min_over_max with the sign flipped."
    )
    for stat, why in table.skipped.items():
        print(f"Skipped {stat}: {why}.")
    for note in table.notes:
        print(f"Note: {note}.")
    head = (
        f"\n{'statistic':<20} {'kind':<10} {'group':<6} {'n':>3} {'ρ(' + c + ')':>9} "
        f"{'ρ':>7} {'p':>8} {'pH':>8} | {'partial':>7} {'p':>8} {'pH':>8} | "
        f"{'within':>7} {'p':>8} {'pH':>8} | verdict"
    )
    print(head)
    for r in table.rows:
        print(
            f"{r.stat:<20} {r.kind:<10} {r.group:<6} {r.n:>3} {_f(r.rho_depth, '+.2f'):>9} "
            f"{_f(r.rho, '+.3f'):>7} {_f(r.p, '.2g'):>8} {_f(r.p_holm, '.2g'):>8} | "
            f"{_f(r.partial_rho, '+.3f'):>7} {_f(r.partial_p, '.2g'):>8} "
            f"{_f(r.partial_p_holm, '.2g'):>8} | {_f(r.within_rho, '+.3f'):>7} "
            f"{_f(r.within_p, '.2g'):>8} {_f(r.within_p_holm, '.2g'):>8} | {r.verdict}"
            + (f"  ({r.note})" if r.note else "")
        )
    print(f"\n{c} alone against {table.outcome} (reference, not in the family):")
    for d in table.depth_alone:
        print(f"  {d.group:<6} n = {d.n:>3}  ρ = {_f(d.rho, '+.3f')}  p = {_f(d.p, '.2g')}")
    print(f"\n{'transform':<9} {c:>6} {'n':>3} {table.outcome:>20} {'kernel_drift':>16}")
    for e in per:
        mean, std = e[f"{table.outcome}_mean"], e[f"{table.outcome}_std"]
        print(
            f"{e['transform']:<9} {e[c]:>6g} {e['n']:>3} {_f(mean, '.3f'):>11} ± "
            f"{_f(std, '.3f'):<6} {_f(e['kernel_drift_mean'], '.3f'):>7} ± "
            f"{_f(e['kernel_drift_std'], '.3f')}"
        )


def _json_safe(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (results.json, rows.json, *.csv) or rows file")
    p.add_argument("--outcome", default="kernel_loss_drop", help=f"e.g. {', '.join(OUTCOMES)}")
    p.add_argument(
        "--stats",
        default=",".join(DEPTH_CONTROL_STATS),
        help="comma-separated row statistics (default: %(default)s)",
    )
    p.add_argument("--control", default="depth", help="the column to control (default: depth)")
    p.add_argument("--pooled", action="store_true", help="also test over all transforms pooled")
    p.add_argument("--n-perm", type=int, default=9999, help="Monte Carlo permutations")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    try:
        rows, source = load_rows(args.sweep)
    except (FileNotFoundError, ValueError) as exc:
        print(f"spectrum_ranks: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"spectrum_ranks: {source} holds no rows", file=sys.stderr)
        return 2
    stats = [s.strip() for s in args.stats.split(",") if s.strip()]
    table = depth_controlled(
        rows,
        stats,
        args.outcome,
        control=args.control,
        pooled=args.pooled,
        n_perm=args.n_perm,
        seed=args.seed,
    )
    per = per_depth(rows, args.outcome, args.control)
    if args.json:
        doc = {
            "source": str(source),
            "tests": _tests_line(table),
            **table.to_dict(),
            "per_depth": per,
        }
        print(json.dumps(_json_safe(doc), indent=1, allow_nan=False))
    else:
        print_table(table, source, per)
    return 0


if __name__ == "__main__":
    sys.exit(main())
