"""Benchmark: one vs two torch threads, spinning vs sleeping OpenMP waits, idle vs contended.

    python bench/threads.py              # 2 repetitions, interleaved; prints a Markdown table
    python bench/threads.py --reps 3 --json

What is timed (in a fresh subprocess per cell, because OpenMP reads ``OMP_WAIT_POLICY`` only when
torch loads): a *fit step loop* (the default pair's reprogrammed model: the default source
architecture, frozen, with a vp transform; minibatch Adam on θ with the config's batch size) and
*source training* steps (the same source model trained with Adam on batches of 64), each after a
few warm-up steps. Untrained weights and random images: the cost is the same as with real data.

Cells: threads {1, 2} x wait policy {ACTIVE (OpenMP's spinning default), PASSIVE} x load
{as found, contended}. "Contended" starts one busy-looping process per core
(``python -c 'while True: pass'``) for those cells and kills it after. All cells run interleaved,
``--reps`` times, so that a change in the machine's load hits every cell alike; the table shows
the median. The machine's load average (``os.getloadavg``) before and after is printed with it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOG = "while True: pass"


def child(spec: dict[str, Any]) -> dict[str, float]:
    """One cell: seconds for ``fit_steps`` fit steps and ``source_steps`` source training steps."""
    import torch
    from torch import nn

    import reprog_core  # noqa: F401  (OMP_WAIT_POLICY is already in the environment)
    from reprog_core.config import ExperimentConfig
    from reprog_core.reprogrammed import build_reprogrammed
    from reprog_core.source_model import build_source_model

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cfg = ExperimentConfig()
    g = torch.Generator().manual_seed(1)

    def timed(step, n: int) -> float:
        for _ in range(3):  # warm-up: allocator, kernels, the OpenMP pool
            step()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return time.perf_counter() - t0

    source = build_source_model(cfg, 10)
    for p in source.parameters():
        p.requires_grad_(False)
    model = build_reprogrammed(cfg, source, 10, 10)
    opt = torch.optim.Adam(model.transform.parameters(), lr=cfg.effective_lr)
    xt = torch.rand(cfg.batch_size, 3, cfg.target_size, cfg.target_size, generator=g)
    yt = torch.randint(10, (cfg.batch_size,), generator=g)

    def fit_step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()

    trainable = build_source_model(cfg, 10)
    opt_s = torch.optim.Adam(trainable.parameters(), lr=1e-3)
    xs = torch.rand(64, 3, cfg.source_size, cfg.source_size, generator=g)
    ys = torch.randint(10, (64,), generator=g)

    def source_step() -> None:
        opt_s.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(trainable(xs), ys).backward()
        opt_s.step()

    return {
        "fit": timed(fit_step, spec["fit_steps"]),
        "source": timed(source_step, spec["source_steps"]),
    }


def _run_child(spec: dict[str, Any]) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": spec["policy"], "PYTHONWARNINGS": "ignore"}
    env.pop("REPROG_THREADS", None)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode)


class Hogs:
    """``n`` busy-looping processes while the ``with`` block runs (killed by their own pids)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Hogs:
        self.procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(self.n)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def measure(reps: int, fit_steps: int, source_steps: int, hogs: int) -> dict[str, Any]:
    """Every cell ``reps`` times, interleaved (module doc); returns medians and the raw times."""
    cells = list(itertools.product(("as found", "contended"), (1, 2), ("ACTIVE", "PASSIVE")))
    raw: dict[tuple, list[dict[str, float]]] = {c: [] for c in cells}
    rng = random.Random(0)
    for _ in range(reps):
        for load in ("as found", "contended"):
            order = [c for c in cells if c[0] == load]
            rng.shuffle(order)
            ctx = Hogs(hogs) if load == "contended" else _Nothing()
            with ctx:
                for cell in order:
                    spec = {
                        "threads": cell[1],
                        "policy": cell[2],
                        "fit_steps": fit_steps,
                        "source_steps": source_steps,
                    }
                    raw[cell].append(_run_child(spec))
    rows = []
    for load, threads, policy in cells:
        times = raw[(load, threads, policy)]
        rows.append(
            {
                "load": load,
                "threads": threads,
                "omp_wait_policy": policy,
                "fit_s": statistics.median(t["fit"] for t in times),
                "source_s": statistics.median(t["source"] for t in times),
                "fit_all": [round(t["fit"], 3) for t in times],
                "source_all": [round(t["source"], 3) for t in times],
            }
        )
    return {"rows": rows}


class _Nothing:
    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two threads over one (time ratio; > 1 means two threads are slower), per load and policy."""
    out = []
    for load, policy in itertools.product(("as found", "contended"), ("ACTIVE", "PASSIVE")):
        one = next(
            r for r in rows if (r["load"], r["threads"], r["omp_wait_policy"]) == (load, 1, policy)
        )
        two = next(
            r for r in rows if (r["load"], r["threads"], r["omp_wait_policy"]) == (load, 2, policy)
        )
        out.append(
            {
                "load": load,
                "omp_wait_policy": policy,
                "fit_2_over_1": two["fit_s"] / one["fit_s"],
                "source_2_over_1": two["source_s"] / one["source_s"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=2, help="repetitions of every cell (median shown)")
    ap.add_argument("--fit-steps", type=int, default=40)
    ap.add_argument("--source-steps", type=int, default=15)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    load0 = [round(v, 2) for v in os.getloadavg()]
    res = measure(args.reps, args.fit_steps, args.source_steps, args.hogs)
    res["ratios"] = ratios(res["rows"])
    res["load"] = {"start": load0, "end": [round(v, 2) for v in os.getloadavg()]}
    res["date"] = _dt.date.today().isoformat()
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    if args.json:
        print(json.dumps(res))
        return 0
    print(
        f"# torch threads x OpenMP wait policy ({res['date']}, {res['machine']}, {args.reps} reps "
        f"interleaved, median; {args.fit_steps} fit steps, {args.source_steps} source steps; "
        f"contended = {args.hogs} busy processes; load {load0} -> {res['load']['end']})\n"
    )
    print(
        "| load | OMP_WAIT_POLICY | fit 1 thread s | fit 2 threads s | 2/1 | source 1 thread s "
        "| source 2 threads s | 2/1 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in res["ratios"]:
        cell = {
            t: next(
                x
                for x in res["rows"]
                if (x["load"], x["threads"], x["omp_wait_policy"])
                == (r["load"], t, r["omp_wait_policy"])
            )
            for t in (1, 2)
        }
        print(
            f"| {r['load']} | {r['omp_wait_policy']} | {cell[1]['fit_s']:.2f} | "
            f"{cell[2]['fit_s']:.2f} | {r['fit_2_over_1']:.2f} | {cell[1]['source_s']:.2f} | "
            f"{cell[2]['source_s']:.2f} | {r['source_2_over_1']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
