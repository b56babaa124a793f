"""Benchmark: the structured target-NTK path against the generic Jacobian path, in the same run.

    python bench/ntk_paths.py                       # CPU, N in {128, 256, 512}, cnn + tiny-vit
    python bench/ntk_paths.py --quick               # N = 128 only
    python bench/ntk_paths.py --device cuda --tf32  # GPU, TF32 matmuls/convolutions on
    python bench/ntk_paths.py --vit-s               # also clip-cnn on ViT-S-32 (random weights)

Models: the default pair's source, an untrained ``cnn`` (ExperimentConfig defaults: depth 3, width
32, source 32 x 32, target 28 x 28, 10 classes), and ``clip-cnn`` heads (same depth and width) on
frozen open_clip towers with random weights; transforms ``vp`` and ``fc``; trace-form kernels.
Untrained weights change nothing about the cost.

Every cell runs in fresh subprocesses (model and data built, a warm-up at N = 2 run): one times
the computation (the fastest of ``--repeat`` runs, default 2: the first run at new shapes pays
for one-off set-up), another measures its peak memory, so that the measuring does not slow the
timed runs. On the CPU, peak memory is the highest resident set size seen while the kernel is
computed (``/proc/self/statm`` polled every 2 ms) minus the resident size just before; glibc is
told to return large freed blocks to the system there (``MALLOC_MMAP_THRESHOLD_``), so that the
resident size follows live memory. Without ``/proc``
the rise of ``ru_maxrss`` is used, which misses peaks below the earlier high-water mark. On
CUDA: the rise of ``torch.cuda.max_memory_allocated``. Where a path would exceed the memory
budget (``$REPROG_NTK_BUDGET``, default 4 GiB) it is not run: the table shows its planned size.
The relative error is ||K_structured - K_jacobian||_F / ||K_jacobian||_F on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------- one measurement


def _build(spec: dict[str, Any]):
    """The reprogrammed model and target inputs of one measurement (seeded, untrained)."""
    import torch

    from reprog_core.config import ExperimentConfig
    from reprog_core.reprogrammed import build_reprogrammed
    from reprog_core.source_model import build_source_model

    cfg = ExperimentConfig(transform=spec["transform"], mapping="identity")
    if spec["backbone"]:
        from reprog_core.source_model.clip import register_tiny_configs

        register_tiny_configs()
        cfg = cfg.replace(source_family="clip-cnn", backbone=spec["backbone"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    source = build_source_model(cfg, 10, device=device).to(device)
    for p in source.parameters():
        p.requires_grad_(False)
    model = build_reprogrammed(cfg, source, 10, 10)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(spec["n"], 3, cfg.target_size, cfg.target_size, generator=g)
    return model, x


def _set_precision(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["device"].startswith("cuda"):
        # cuDNN's TF32 switch defaults to on: set both explicitly for "TF32 off".
        torch.backends.cuda.matmul.allow_tf32 = spec["tf32"]
        torch.backends.cudnn.allow_tf32 = spec["tf32"]


class RssPeak:
    """Highest resident set size (bytes) while the ``with`` block runs, polled in a thread."""

    STATM = Path("/proc/self/statm")

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.available = self.STATM.exists()
        self.start = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def rss(self) -> int:
        if self.available:
            return int(self.STATM.read_text().split()[1]) * self.page
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssPeak:
        self.start = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def rise(self) -> int:
        return max(0, self.peak - self.start)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell's measurement, ``spec['mode']`` 'time' (seconds: the fastest of ``repeat`` runs;
    K is written to ``spec['out']``) or 'memory' (peak bytes of one run)."""
    import numpy as np
    import torch

    from reprog_core.ntk import target_ntk

    _set_precision(spec)
    dtype = getattr(torch, spec["dtype"])
    model, x = _build(spec)
    cuda = spec["device"].startswith("cuda")
    target_ntk(model, x[:2], method=spec["method"], dtype=dtype)  # warm-up: lazy init, kernels

    def run() -> tuple[torch.Tensor, float]:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        k, _ = target_ntk(model, x, method=spec["method"], dtype=dtype)
        if cuda:
            torch.cuda.synchronize()
        return k, time.perf_counter() - t0

    if spec["mode"] == "time":
        times = []
        for _ in range(spec["repeat"]):
            k, seconds = run()
            times.append(seconds)
        np.save(spec["out"], k.double().cpu().numpy())
        return {"seconds": min(times)}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        return {"peak_bytes": int(torch.cuda.max_memory_allocated() - base)}
    with RssPeak() as mem:
        run()
    return {"peak_bytes": int(mem.rise)}


def planned_bytes(spec: dict[str, Any], cache: dict[tuple, Any]) -> dict[str, Any]:
    """The memory plan of a path (no computation): bytes, budget, fits. Models are cached."""
    import torch

    from reprog_core.ntk import estimate_bytes

    key = (spec["backbone"], spec["transform"])
    if key not in cache:
        cache[key] = _build({**spec, "n": 1, "device": "cpu"})[0]
    return estimate_bytes(
        cache[key], spec["n"], method=spec["method"], dtype=getattr(torch, spec["dtype"])
    )


# ----------------------------------------------------------------------------- the driver


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if spec["mode"] == "memory":
        # A fixed mmap threshold returns large freed blocks to the system (see the module doc).
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def chunk_sweep(n: int, chunks: list[int], repeat: int, threads: int) -> None:
    """Structured path, float32 G + float64 Gram, at N = n: the time per chunk size, and the
    c_T backward passes as a loop or as one batched backward (``is_grads_batched``), all in one
    process, interleaved ``repeat`` times (fastest shown)."""
    import torch

    import reprog_core.ntk.structured as structured_mod
    import reprog_core.ntk.target as target_mod

    torch.set_num_threads(threads)
    cells = [(kind, chunk, "loop") for kind in ("vp", "fc") for chunk in chunks]
    cells += [(kind, 32, "batched") for kind in ("vp", "fc")]
    models = {}
    for kind in ("vp", "fc"):
        spec = {"backbone": "", "transform": kind, "n": n, "device": "cpu"}
        models[kind] = _build(spec)
    times: dict[tuple, list[float]] = {c: [] for c in cells}
    for _ in range(repeat):
        for kind, chunk, mode in cells:
            model, x = models[kind]
            structured_mod.COTANGENTS = mode
            t0 = time.perf_counter()
            target_mod.target_ntk(
                model, x, dtype=torch.float64, grad_dtype=torch.float32, chunk_size=chunk
            )
            times[(kind, chunk, mode)].append(time.perf_counter() - t0)
    structured_mod.COTANGENTS = "loop"
    print(
        f"# structured kernel, float32 G + float64 Gram, N={n}, cnn source ({date.today()}, "
        f"{threads} threads, fastest of {repeat} interleaved, load {os.getloadavg()[0]:.1f})\n"
    )
    print("| transform | chunk | cotangents | seconds |")
    print("|---|---|---|---|")
    for cell in cells:
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {min(times[cell]):.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:1 (default cpu)")
    ap.add_argument("--n", type=int, nargs="+", default=None, help="sample counts (128 256 512)")
    ap.add_argument("--quick", action="store_true", help="N = 128 only")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (default off)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("REPROG_THREADS", "0") or 0))
    ap.add_argument("--transforms", nargs="+", default=["vp", "fc"])
    ap.add_argument(
        "--vit-s", action="store_true", help="also clip-cnn on ViT-S-32 (slow on a CPU)"
    )
    ap.add_argument("--repeat", type=int, default=2, help="runs per cell; the fastest is shown")
    ap.add_argument(
        "--chunks", action="store_true", help="chunk sizes and batched cotangents instead"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.chunks:
        n = (args.n or [256])[0]
        chunk_sweep(n, [8, 16, 32, 64], max(1, args.repeat), args.threads or 1)
        return 0

    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    import numpy as np
    import torch

    from reprog_core.ntk.budget import resolve_budget

    threads = args.threads or min(2, os.cpu_count() or 1)
    ns = args.n or ([128] if args.quick else [128, 256, 512])
    sources = [("cnn", ""), ("clip-cnn tiny-vit", "tiny-vit")]
    if args.vit_s:
        sources.append(("clip-cnn ViT-S-32", "ViT-S-32"))
    device_name = args.device
    if args.device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(args.device))
    print(
        f"# NTK paths: structured vs jacobian ({date.today()}, {platform.machine()}, "
        f"{device_name}, {threads} threads, {args.dtype}"
        + (f", TF32 {'on' if args.tf32 else 'off'}" if args.device.startswith("cuda") else "")
        + f", torch {torch.__version__}, budget {_fmt_bytes(resolve_budget())})\n"
    )
    print(
        "| source | transform | N | P | structured s | structured peak | jacobian s "
        "| jacobian peak | speed-up | rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp(prefix="ntk-bench-"))
    models: dict[tuple, Any] = {}
    for label, backbone in sources:
        for kind in args.transforms:
            for n in ns:
                base = {
                    "backbone": backbone,
                    "transform": kind,
                    "n": n,
                    "dtype": args.dtype,
                    "device": args.device,
                    "tf32": args.tf32,
                    "threads": threads,
                }
                row: dict[str, dict[str, Any]] = {}
                for method in ("structured", "jacobian"):
                    spec = {**base, "method": method, "out": str(tmp / f"{method}.npy")}
                    plan = planned_bytes(spec, models)
                    if not plan["fits"]:
                        row[method] = {"skipped": plan["bytes"]}
                        continue
                    timed = _run_child({**spec, "mode": "time", "repeat": max(1, args.repeat)})
                    memory = _run_child({**spec, "mode": "memory"})
                    row[method] = {**memory, **timed}
                s, j = row["structured"], row["jacobian"]
                p_count = _param_count(backbone, kind)

                def cell(r: dict[str, Any]) -> tuple[str, str]:
                    if "error" in r:
                        return "error", r["error"][:60]
                    if "skipped" in r:
                        return "over budget", f"needs ~{_fmt_bytes(r['skipped'])} (est.)"
                    return f"{r['seconds']:.2f}", _fmt_bytes(r["peak_bytes"])

                s_t, s_m = cell(s)
                j_t, j_m = cell(j)
                speed = err = "-"
                if "seconds" in s and "seconds" in j:
                    speed = f"{j['seconds'] / s['seconds']:.1f}x"
                    ks, kj = np.load(tmp / "structured.npy"), np.load(tmp / "jacobian.npy")
                    err = f"{np.linalg.norm(ks - kj) / np.linalg.norm(kj):.1e}"
                print(
                    f"| {label} | {kind} | {n} | {p_count} | {s_t} | {s_m} | {j_t} | {j_m} "
                    f"| {speed} | {err} |",
                    flush=True,
                )
    return 0


def _param_count(backbone: str, kind: str) -> str:
    from reprog_core.input_transform import build_transform

    t = build_transform(kind, 32, 28)
    raw = sum(p.numel() for p in t.parameters())
    return f"{t.n_params:,}" if raw == t.n_params else f"{t.n_params:,} ({raw:,} raw)"


if __name__ == "__main__":
    raise SystemExit(main())
