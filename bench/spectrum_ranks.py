"""Does a spectral statistic rank the configurations of a saved sweep? Spearman's rho of each
statistic against an outcome, over all points and per transform (``reprog_core.analysis``).

    python bench/spectrum_ranks.py sweeps/paper-v2-kernel --outcome kernel_loss_drop
    python bench/spectrum_ranks.py sweeps/paper-v2 --outcome target_test_acc

Outcomes: ``target_test_acc``, ``kernel_loss_drop`` (fraction of the squared loss on the kernel
samples gone by the last step: in the kernel regime the loss the fit minimises), ``agree_until``.
Prints a table, and the per-depth means of the outcome and the kernel drift.
"""

from __future__ import annotations

import argparse

from reprog_core.analysis import correlations, spread
from reprog_core.sweep import load_results

STATS = ("lambda_min", "effective_rank", "lambda_max", "condition_number", "alignment")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (its results.json)")
    p.add_argument("--outcome", default="kernel_loss_drop")
    args = p.parse_args()
    rows = load_results(args.sweep)["rows"]
    print(f"{len(rows)} points; outcome {args.outcome}")
    print(f"{'statistic':<17} {'group':<6} {'n':>3} {'rho':>7} {'p':>9}")
    for c in correlations(rows, STATS, accuracy=args.outcome):
        rho = "—" if c.rho is None else f"{c.rho:+.3f}"
        pv = "—" if c.p is None else f"{c.p:.2g}"
        print(f"{c.stat:<17} {c.group:<6} {c.n:>3} {rho:>7} {pv:>9}")
    print(f"\n{'transform':<9} {'depth':>5} {args.outcome:>18} {'kernel_drift':>14}")
    for t in sorted({r["transform"] for r in rows}):
        for d in sorted({r["depth"] for r in rows}):
            pts = [r for r in rows if r["transform"] == t and r["depth"] == d]
            out, drift = (
                spread(r[args.outcome] for r in pts),
                spread(r["kernel_drift"] for r in pts),
            )
            print(
                f"{t:<9} {d:>5} {out.mean:>10.3f} ± {out.std:<5.3f} {drift.mean:>7.3f} ± "
                f"{drift.std:.3f}"
            )


if __name__ == "__main__":
    main()
