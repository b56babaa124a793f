"""Load test for the cached backend (not a test): N simulated sessions ask for a mix of configs.

Each session is a thread that makes ``--requests`` requests, drawing configs from a pool of
``--distinct`` ones with Zipf-like popularity (in a classroom most people open the default URL),
with ``--think`` seconds between requests. Prints throughput, latency percentiles, how each
request was served (computed / joined / hit) and how many computations actually ran.

    python bench/load_backend.py --task sleep --sessions 30 --requests 4     # synthetic, fast
    python bench/load_backend.py --task explore --sessions 30 --distinct 6   # real pipeline
    python bench/load_backend.py --url http://127.0.0.1:8501/ --cache-dir .cache

By default the backend uses a fresh temporary cache (a cold start); pass ``--cache-dir`` to
measure against an existing (warm) one. ``--url`` drives a running app over HTTP instead, on
127.0.0.1 only: each request is a GET with the config in the query string. (A Streamlit app
computes over its websocket, so there this measures page serving; computations are counted as
new entries in ``--cache-dir`` if given.) Every loop is bounded and ``--max-seconds`` ends it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

from reprog_core.backend import Backend, BackendError, Limits, OverBudget, Progress, Store
from reprog_core.config import ExperimentConfig
from reprog_core.serving import TASKS

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_SLEEP_S = 60.0


def sleep_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The synthetic task (``--task sleep``): sleeps ``params['seconds']`` (default 0.2) in
    small, cancellable steps and returns a small record of what it was asked. It measures the
    backend's queueing, dedup and locking without any computation."""
    seconds = float(params.get("seconds", 0.2))
    if not 0 <= seconds <= MAX_SLEEP_S:
        raise OverBudget(f"sleep: seconds must be between 0 and {MAX_SLEEP_S}, got {seconds}")
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        progress.update(elapsed / seconds if seconds else 1.0, "sleeping")
        time.sleep(min(0.02, seconds - elapsed))
    progress.update(1.0, "done")
    return {"task": "sleep", "seconds": seconds, "depth": cfg.depth, "seed": cfg.seed}


def config_pool(distinct: int) -> list[ExperimentConfig]:
    """``distinct`` configs: the default pair at depths 1..6 x transforms, then other seeds."""
    base = ExperimentConfig()
    grid = [(d, t) for t in ("vp", "fc", "vp-fc") for d in range(1, 7)]
    return [
        base.replace(depth=grid[i % 18][0], transform=grid[i % 18][1], seed=i // 18)
        for i in range(distinct)
    ]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Session(threading.Thread):
    """One simulated user: ``requests`` requests with think time, until the deadline."""

    def __init__(self, index: int, args: argparse.Namespace, send: Any, deadline: float) -> None:
        super().__init__(name=f"session-{index}", daemon=True)
        self.rng = random.Random(args.seed * 100_003 + index)
        self.args = args
        self.send = send
        self.deadline = deadline
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        pool = self.args.pool
        weights = [1.0 / (i + 1) for i in range(len(pool))]
        for _ in range(self.args.requests):
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            cfg = self.rng.choices(pool, weights)[0]
            start = time.monotonic()
            try:
                self.outcomes[self.send(cfg, left)] += 1
                self.latencies.append(time.monotonic() - start)
            except (BackendError, TimeoutError, OSError) as exc:
                self.outcomes["error"] += 1
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.rng.uniform(0, 2 * self.args.think))


def backend_sender(args: argparse.Namespace) -> tuple[Any, Backend]:
    cache = args.cache_dir or tempfile.mkdtemp(prefix="reprog-load-")
    backend = Backend(
        cache_dir=cache,
        device=args.device,
        cpu_workers=args.workers,
        isolation=args.isolation,
        limits=Limits.from_env(),
        # By its module name, not __main__'s: a worker process (--isolation process) imports it.
        tasks={**TASKS, "sleep": importlib.import_module("load_backend").sleep_task},
    )
    params = {"seconds": args.seconds} if args.task == "sleep" else {}

    def send(cfg: ExperimentConfig, timeout: float) -> str:
        return backend.run(args.task, cfg, params, timeout=timeout)["cache"]

    return send, backend


def http_sender(args: argparse.Namespace) -> Any:
    parsed = urllib.parse.urlsplit(args.url)
    if parsed.scheme != "http" or parsed.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"--url must be http:// on {LOCAL_HOSTS}, got {args.url!r}")

    def send(cfg: ExperimentConfig, timeout: float) -> str:
        query = urllib.parse.urlencode({"depth": cfg.depth, "transform": cfg.transform})
        url = urllib.parse.urlunsplit(parsed._replace(query=query))
        with urllib.request.urlopen(url, timeout=min(timeout, 120)) as resp:  # noqa: S310
            resp.read()
            return f"http {resp.status}"

    return send


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="sleep", help="task kind: 'sleep' (synthetic) or 'explore'")
    p.add_argument("--sessions", type=int, default=30, help="concurrent sessions (threads)")
    p.add_argument("--requests", type=int, default=4, help="requests per session")
    p.add_argument("--distinct", type=int, default=12, help="distinct configs in the mix")
    p.add_argument("--seconds", type=float, default=0.2, help="sleep task: seconds per compute")
    p.add_argument("--think", type=float, default=0.05, help="mean pause between requests (s)")
    p.add_argument("--workers", type=int, default=2, help="CPU worker slots")
    p.add_argument("--device", default=None, help="'cpu', 'cuda', 'cuda:k' (default: auto)")
    p.add_argument("--isolation", choices=("thread", "process"), default="thread")
    p.add_argument("--cache-dir", default=None, help="default: a fresh temporary (cold) cache")
    p.add_argument("--url", default=None, help="drive a running app at this 127.0.0.1 URL")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop issuing after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON record")
    args = p.parse_args(argv)
    if not (1 <= args.sessions <= 500 and 1 <= args.requests <= 1000 and args.distinct >= 1):
        p.error("need 1 <= --sessions <= 500, 1 <= --requests <= 1000, --distinct >= 1")
    args.pool = config_pool(args.distinct)

    backend = None
    entries_before = None
    if args.url:
        send = http_sender(args)
        if args.cache_dir:
            entries_before = len(Store(os.path.join(args.cache_dir, "results")))
    else:
        send, backend = backend_sender(args)

    deadline = time.monotonic() + args.max_seconds
    sessions = [Session(i, args, send, deadline) for i in range(args.sessions)]
    start = time.monotonic()
    for s in sessions:
        s.start()
    for s in sessions:
        s.join(max(0.0, deadline - time.monotonic()) + 30)
    wall = time.monotonic() - start

    latencies = [x for s in sessions for x in s.latencies]
    outcomes: Counter[str] = sum((s.outcomes for s in sessions), Counter())
    errors = [e for s in sessions for e in s.errors]
    computations: int | None = None
    if backend is not None:
        computations = backend.stats()["computations"]
        backend.close()
    elif entries_before is not None:
        computations = len(Store(os.path.join(args.cache_dir, "results"))) - entries_before

    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": f"{platform.node()} {platform.platform()} {os.cpu_count()} cores",
        "target": args.url or f"backend task={args.task} isolation={args.isolation}",
        "sessions": args.sessions,
        "requests_per_session": args.requests,
        "distinct_configs": args.distinct,
        "workers": args.workers,
        "requests": len(latencies) + outcomes["error"],
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 2) if wall else None,
        "latency_s": {f"p{q}": round(percentile(latencies, q), 4) for q in (50, 90, 99)},
        "outcomes": dict(outcomes),
        "computations": computations,
        "errors": errors[:5],
    }
    if args.json:
        print(json.dumps(record))
    else:
        lat = record["latency_s"]
        print(f"{record['date']}  {record['machine']}")
        print(
            f"{record['target']}: {args.sessions} sessions x {args.requests} requests, "
            f"{args.distinct} distinct configs, {args.workers} workers"
        )
        print(
            f"requests {record['requests']} in {wall:.2f} s = {record['throughput_rps']} req/s; "
            f"latency p50 {lat['p50']:.3f} s, p90 {lat['p90']:.3f} s, p99 {lat['p99']:.3f} s"
        )
        print(f"served: {dict(sorted(outcomes.items()))}; computations performed: {computations}")
        for e in errors[:5]:
            print(f"  error: {e}")
    return 1 if outcomes["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
