"""Adam's step on fc's parameters: the per-entry loop against the fused kernel, interleaved.

    python bench/adam_step.py [--reps 2] [--steps 20]

fc 28 -> 32 trains W (3072 x 2352) and c (3072): the optimizer step touches 7.2M entries, so how
it is implemented shows in every fit step. Prints ms per training step (forward, backward, step)
of a linear layer of that shape, batch 32, one thread, for both in alternation, and the load.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def one(fused: bool, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3072, 2352, generator=g))
    b = torch.nn.Parameter(torch.zeros(3072))
    x = torch.randn(32, 2352, generator=g)
    opt = torch.optim.Adam([w, b], lr=1e-3, fused=fused)
    t = time.perf_counter()
    for _ in range(steps):
        loss = (x @ w.T + b).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    times: dict[str, list[float]] = {"loop": [], "fused": []}
    for _ in range(a.reps):
        for name, fused in (("loop", False), ("fused", True)):
            times[name].append(one(fused, a.steps))
    print(f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    print("| Adam | ms per step (each rep) | best |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {' / '.join(f'{t:.0f}' for t in ts)} | {min(ts):.0f} |")


if __name__ == "__main__":
    main()
