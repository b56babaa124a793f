"""Server memory over many browser sessions: does the dashboard's resident memory stay flat?

Starts a real dashboard server (``streamlit run dashboard/serve.py``, as ``make app`` does) on
127.0.0.1 at a free port, with its own cache directory, and opens ``--sessions`` sessions one
after another (``--concurrency`` at a time) the way a browser tab does, over Streamlit's own
websocket protocol: connect to ``/_stcore/stream``, ask for a script run of a page with a query
string (a ``BackMsg`` holding a ``ClientState``), read the page's messages until the run finishes,
optionally switch to the next page in the same session, then close the socket, as closing a tab
does (``--keep-open``: leave every tab open until the end). No browser is needed, so
500 sessions take minutes on two cores.

The first session computes the results the pages need (small settings, see ``FAST``); every later
one is served from the cache, so memory growth measures what the server keeps per session, not
the computations. The server's resident memory (``VmRSS`` from ``/proc/<pid>/status``, the server
and any worker processes it started) is sampled after the warm-up and every ``--sample-every``
sessions, and printed as a table. Exit status 1 when the end is more than ``--tolerance`` above the
post-warm-up sample (the flatness the dashboard promises), 2 on a usage or start-up error.

Bounded: at most ``--sessions`` sessions (<= 5000), each with a ``--session-timeout-s`` deadline,
and the whole run stops after ``--max-minutes``. Only 127.0.0.1 is contacted.

    .venv/bin/python bench/load_sessions.py                      # 500 sessions, Explore page
    .venv/bin/python bench/load_sessions.py --sessions 100 --pages explore,learn,compare
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Small but real computations (as in the dashboard's tests): seconds each on a laptop CPU.
FAST = "steps=20&n_kernel=16&source_per_class=20&source_epochs=1&eval_every=5&target_per_class=20"
PAGES = {"explore": "", "compare": "compare", "depth-sweep": "depth-sweep", "learn": "learn"}
MAX_SESSIONS = 5000


@dataclass
class Sample:
    """One memory reading: after ``sessions`` sessions, ``elapsed_s`` into the run."""

    sessions: int
    elapsed_s: float
    rss_mib: float
    server_rss_mib: float
    threads: int


# --------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_field(pid: int, name: str) -> int:
    """A numeric field of ``/proc/<pid>/status`` (kB for memory fields); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (worker processes), from ``/proc/*/stat``."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def sample(pid: int, sessions: int, t0: float) -> Sample:
    server_kb = _status_field(pid, "VmRSS")
    total_kb = server_kb + sum(_status_field(c, "VmRSS") for c in _children(pid))
    return Sample(
        sessions,
        time.monotonic() - t0,
        total_kb / 1024,
        server_kb / 1024,
        _status_field(pid, "Threads"),
    )


def start_server(port: int, cache_dir: Path, log_path: Path, extra: list[str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "REPROG_CACHE_DIR": str(cache_dir),
        "REPROG_THREADS": os.environ.get("REPROG_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "streamlit", "run", "dashboard/serve.py",
        "--server.headless", "true", "--server.address", "127.0.0.1",
        "--server.port", str(port), "--browser.gatherUsageStats", "false", *extra,
    ]  # fmt: skip
    log = open(log_path, "w")  # noqa: SIM115 (kept open for the server's lifetime)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"the server did not start; its log:\n{log_path.read_text()[-2000:]}"
            )
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- one session
class SessionFailed(RuntimeError):
    pass


async def run_page(ws, page: str, query: str, timeout_s: float) -> int:
    """Ask for one script run of ``page`` and read until it has finished (reruns included).

    Returns the number of bytes the server sent for it.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = BackMsg()
    msg.rerun_script.query_string = query
    msg.rerun_script.page_name = PAGES[page]
    await ws.send(msg.SerializeToString())
    received = 0
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SessionFailed(f"{page}: no finished run within {timeout_s:.0f} s")
        data = await asyncio.wait_for(ws.recv(), left)
        received += len(data)
        fwd = ForwardMsg()
        fwd.ParseFromString(data)
        kind = fwd.WhichOneof("type")
        if kind == "delta" and fwd.delta.new_element.WhichOneof("type") == "exception":
            raise SessionFailed(
                f"{page}: exception on the page: {fwd.delta.new_element.exception.message}"
            )
        if kind == "script_finished":
            if fwd.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                raise SessionFailed(f"{page}: the script did not compile")
            if fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return received


async def one_session(
    port: int, pages: list[str], query: str, timeout_s: float, keep: list | None = None
) -> int:
    """One tab: connect, run each page, close (or, with ``keep``, leave it open in ``keep``)."""
    import websockets

    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/_stcore/stream",
        subprotocols=["streamlit"],
        origin=f"http://127.0.0.1:{port}",
        max_size=None,
        open_timeout=timeout_s,
    )
    try:
        total = 0
        for page in pages:
            total += await run_page(ws, page, query, timeout_s)
    except BaseException:
        await ws.close()
        raise
    if keep is None:
        await ws.close()
    else:
        keep.append(ws)
    return total


async def drive(
    args: argparse.Namespace, pid: int, pages: list[str]
) -> tuple[list[Sample], int, list[str]]:
    t0 = time.monotonic()
    stop_at = t0 + 60 * args.max_minutes
    samples: list[Sample] = []
    errors: list[str] = []
    done = 0
    # The first session computes what the pages need (a cold cache): alone, and with time.
    try:
        await one_session(args.port, pages, args.query, max(args.session_timeout_s, 600))
    except Exception as exc:
        errors.append(f"warm-up session: {type(exc).__name__}: {exc}")
        return samples, done, errors
    done = 1
    samples.append(sample(pid, done, t0))
    sem = asyncio.Semaphore(args.concurrency)
    kept: list = []  # with --keep-open: every tab stays open until the end

    async def worker(i: int) -> None:
        nonlocal done
        async with sem:
            if time.monotonic() > stop_at:
                return
            try:
                await one_session(
                    args.port,
                    pages,
                    args.query,
                    args.session_timeout_s,
                    kept if args.keep_open else None,
                )
            except Exception as exc:  # noqa: BLE001 (counted and reported, the run goes on)
                errors.append(f"session {i}: {type(exc).__name__}: {exc}")
            done += 1

    i = 1
    marks = sorted(
        {args.warmup, *range(args.warmup, args.sessions + 1, args.sample_every), args.sessions}
    )
    for mark in marks:
        await asyncio.gather(*(worker(j) for j in range(i, mark)))
        i = max(i, mark)
        if time.monotonic() > stop_at:
            print(f"stopped after {args.max_minutes} minutes (--max-minutes)", flush=True)
            samples.append(sample(pid, done, t0))
            break
        samples.append(sample(pid, done, t0))
        print(
            f"  {done:5d} sessions  {samples[-1].rss_mib:8.0f} MiB  {samples[-1].elapsed_s:6.0f} s",
            flush=True,
        )
    for ws in kept:
        await ws.close()
    return samples, done, errors


# --------------------------------------------------------------------------- main
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=500, help="sessions to open (default 500)")
    ap.add_argument("--concurrency", type=int, default=2, help="sessions open at once (default 2)")
    ap.add_argument("--warmup", type=int, default=100, help="sessions before the baseline sample")
    ap.add_argument("--sample-every", type=int, default=50, help="sessions between samples")
    ap.add_argument(
        "--pages",
        default="explore",
        help=f"pages each session visits in order, from {', '.join(PAGES)}",
    )
    ap.add_argument("--query", default=FAST, help="the query string every page is opened with")
    ap.add_argument("--session-timeout-s", type=float, default=120.0)
    ap.add_argument("--max-minutes", type=float, default=40.0, help="stop the run after this long")
    ap.add_argument(
        "--keep-open",
        action="store_true",
        help="leave every session's websocket open until the end (tabs left open), instead of "
        "closing each as its pages are drawn",
    )
    ap.add_argument("--tolerance", type=float, default=0.20, help="allowed growth after warm-up")
    ap.add_argument("--cache-dir", type=Path, help="result cache to use (default: a fresh one)")
    ap.add_argument(
        "--server-arg", action="append", default=[], help="extra `streamlit run` flag (repeatable)"
    )
    args = ap.parse_args(argv)
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    bad = [p for p in pages if p not in PAGES]
    if bad or not pages:
        print(
            f"error: --pages: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(PAGES)}"
        )
        return 2
    if not 2 <= args.sessions <= MAX_SESSIONS or not 1 <= args.concurrency <= 16:
        print(f"error: --sessions must be 2..{MAX_SESSIONS} and --concurrency 1..16")
        return 2
    if not 1 <= args.warmup < args.sessions or args.sample_every < 1:
        print("error: --warmup must be at least 1 and below --sessions; --sample-every at least 1")
        return 2

    # A kill (SIGTERM) ends the run like Ctrl-C does, so the server below is stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="reprog-load-sessions-"))
    cache = args.cache_dir or tmp / "cache"
    args.port = _free_port()
    print(
        f"load_sessions: {args.sessions} sessions ({args.concurrency} at a time), pages "
        f"{', '.join(pages)}, port {args.port}, cache {cache}"
    )
    try:
        proc = start_server(args.port, cache, tmp / "server.log", args.server_arg)
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 2
    load_before = _load()
    t0 = time.monotonic()
    try:
        started = sample(proc.pid, 0, t0)
        samples, done, errors = asyncio.run(drive(args, proc.pid, pages))
    finally:
        stop_server(proc)
    wall = time.monotonic() - t0
    if not args.cache_dir:
        shutil.rmtree(tmp / "cache", ignore_errors=True)

    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.machine()}, {os.cpu_count()} CPUs · "
        f"load average {load_before} before, {_load()} after · {wall:.0f} s · streamlit server log "
        f"{tmp / 'server.log'}"
    )
    print("| sessions | elapsed s | RSS server + workers MiB | server MiB | threads |")
    print("|---|---|---|---|---|")
    for s in [started, *samples]:
        print(
            f"| {s.sessions} | {s.elapsed_s:.0f} | {s.rss_mib:.0f} | {s.server_rss_mib:.0f} "
            f"| {s.threads} |"
        )
    if errors:
        print(f"\n{len(errors)} sessions failed; the first: {errors[:3]}")
    base = next((s for s in samples if s.sessions >= args.warmup), None)
    if base is None or not samples or samples[-1] is base:
        print("not enough sessions for a verdict")
        return 1
    end = samples[-1]
    growth = end.rss_mib / base.rss_mib - 1
    peak = max(s.rss_mib for s in samples if s.sessions >= args.warmup)
    verdict = "flat" if growth <= args.tolerance and not errors else "NOT flat"
    if end.sessions < args.sessions:
        verdict += f" (stopped early: {end.sessions} of {args.sessions} sessions)"
    print(
        f"\nafter warm-up ({base.sessions} sessions): {base.rss_mib:.0f} MiB; "
        f"after {end.sessions}: {end.rss_mib:.0f} MiB ({100 * growth:+.1f} %, "
        f"peak {peak:.0f} MiB) -> {verdict} "
        f"(tolerance {100 * args.tolerance:.0f} %)"
    )
    return 0 if verdict.startswith("flat") and end.sessions == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
