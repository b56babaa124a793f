"""The dashboard's job client: what a page needs from the backend, and the progress of what is
on its way.

A page builds ``Request``s and calls ``fetch`` for each: a stored result comes back at once (from
the shared in-memory LRU, else the backend's cache); otherwise the request is submitted and its
handle kept in the session. This is the dashboard's job boundary: a result leaves here as its
typed record (``reprog_core.results.parse``), parsed once, and pages read attributes; how this
session got it (``how``) and its key (``Request.key``) are the footer's. ``watch`` then shows
the session's requests: failures and cancellations with a button to start again, and the running
ones in a fragment that Streamlit reruns every ``POLL_S`` seconds (``_live_progress``), which
reruns the page when one ends. The backend computes in its own threads or processes, so a
session waiting for a result never blocks another session. ``drop_stale`` withdraws what the
page's current view no longer needs.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from dashboard import state
from dashboard.ui import PAGE, backend
from reprog_core.backend import BackendError, Handle
from reprog_core.config import ConfigError, ExperimentConfig
from reprog_core.results import Record, parse

JOBS = "_jobs"
JOB_PAGE = "_job_page"  # key -> the page that asked for it (see ``drop_stale``)
RESULTS = "_results"
# How often the progress of running requests is redrawn, in seconds (a fragment; see ``watch``).
POLL_S = float(os.environ.get("REPROG_DASHBOARD_POLL_S", "1.0"))
# Parsed results kept in memory, for all sessions together (each explore result is about
# 0.6 MB of JSON, 1.3 MB as Python objects). A session keeps only keys: what a session holds
# must stay small, since a closed tab is kept for a while (Streamlit's disconnected-session
# TTL) and open tabs add up (bench/load_sessions.py measures it).
MAX_SHARED_RESULTS = int(os.environ.get("REPROG_DASHBOARD_RESULTS", "16"))


@dataclass
class Request:
    """One result a page needs: a backend task kind, a config, params, and a label for people."""

    kind: str
    cfg: ExperimentConfig
    label: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return backend().key(self.kind, self.cfg, self.params)


class _SharedResults:
    """A process-wide LRU of parsed results, key -> typed record, at most ``size`` of them.

    Shared by every session (the results are read only: pages draw from them), so memory does
    not grow with the number of sessions, only with the number of distinct results looked at
    recently. Thread-safe: each session runs its script in its own thread.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[str, Record] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Record | None:
        with self._lock:
            res = self._items.get(key)
            if res is not None:
                self._items.move_to_end(key)
            return res

    def put(self, key: str, result: Record) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


SHARED_RESULTS = _SharedResults(MAX_SHARED_RESULTS)


def _memo() -> OrderedDict[str, str]:
    """This session's results: key -> how it was obtained ('hit', 'computed', ...); the results
    themselves live in ``SHARED_RESULTS`` and the backend's store."""
    return st.session_state.setdefault(RESULTS, OrderedDict())


def _jobs() -> dict[str, tuple[str, Handle | None, str]]:
    """key -> (label, handle or None, error message when submitting failed)."""
    return st.session_state.setdefault(JOBS, {})


def _remember(key: str, kind: str, stored: dict[str, Any], how: str | None = None) -> Record:
    """Parse ``stored`` (the backend's dict for task ``kind``) into its record, once, and keep
    it; ``how`` this session got it (default: the backend's ``cache`` value)."""
    try:
        record = parse(kind, stored)
    except (TypeError, ValueError, KeyError) as exc:  # a stored dict this version cannot read
        msg = f"the stored {kind} result is not one this version reads ({exc})"
        raise BackendError(msg) from exc
    memo = _memo()
    memo[key] = how or str(stored.get("cache"))
    memo.move_to_end(key)
    while len(memo) > 64:  # keys only: a few bytes each
        memo.popitem(last=False)
    SHARED_RESULTS.put(key, record)
    return record


def how(req: Request) -> str:
    """How this session got the result of ``req``: 'computed', 'joined' or (else) 'hit'."""
    return _memo().get(req.key, "hit")


def cached(req: Request) -> Record | None:
    """The stored result of ``req`` as its typed record, or None."""
    key = req.key
    shared = SHARED_RESULTS.get(key)
    if shared is not None:
        return shared
    res = backend().get(req.kind, req.cfg, req.params)
    if res is None:
        return None
    return _remember(key, req.kind, res, _memo().get(key))


def fetch(req: Request, start: bool = True) -> Record | None:
    """The result of ``req`` if it is ready; otherwise submit it (when ``start``) and return None.

    Cached results come back at once (``backend.get`` first). A running request is left to
    ``watch`` to display; a failed or cancelled one stays failed until ``retry``.
    """
    key = req.key
    jobs = _jobs()
    try:
        res = cached(req)
    except BackendError as exc:
        jobs[key] = (req.label, None, str(exc))
        return None
    if res is not None:
        jobs.pop(key, None)  # another session (or a CLI sweep) stored it first
        return res
    if key not in jobs:
        if not start:
            return None
        try:
            jobs[key] = (req.label, backend().submit(req.kind, req.cfg, req.params), "")
            st.session_state.setdefault(JOB_PAGE, {})[key] = st.session_state.get(PAGE)
        except (BackendError, ConfigError, ValueError) as exc:
            jobs[key] = (req.label, None, str(exc))
            return None
    label, handle, error = jobs[key]
    if label != req.label:  # asked for on another page first: this page's name for it
        label = req.label
        jobs[key] = (label, handle, error)
        st.session_state.setdefault(JOB_PAGE, {})[key] = st.session_state.get(PAGE)
    if handle is not None and handle.status().state == "done":
        try:
            res = handle.result(0)
        except BackendError as exc:  # done, but its result could not be read back
            jobs[key] = (label, None, str(exc))
            return None
        del jobs[key]
        return _remember(key, req.kind, res)
    return None


def pending(keys: Iterable[str]) -> list[str]:
    """Keys of this session's requests that are still on their way: queued, running, or done and
    not yet collected. A failed or cancelled request is not pending (``watch`` shows it)."""
    jobs = _jobs()
    out = []
    for key in keys:
        handle = jobs[key][1] if key in jobs else None
        if handle is not None and handle.status().state not in ("failed", "cancelled"):
            out.append(key)
    return out


def drop_stale(keys: Iterable[str]) -> None:
    """Forget the requests this page made earlier that its current view does not need. Queued
    ones are withdrawn (dragging a slider across six values must not leave six jobs in the shared
    queue); running ones go on, since their results will be cached, but are no longer shown.
    Other pages' requests are left alone: a sweep keeps going while you look at Explore."""
    keep = set(keys)
    jobs = _jobs()
    page_of = st.session_state.setdefault(JOB_PAGE, {})
    here = st.session_state.get(PAGE)
    for key in [k for k in jobs if k not in keep and page_of.get(k) == here]:
        handle = jobs[key][1]
        state_now = handle.status().state if handle is not None else "failed"
        if state_now == "queued":
            handle.cancel()
        if state_now != "running":
            del jobs[key]


def retry(key: str) -> None:
    _jobs().pop(key, None)


def _cancel(key: str) -> None:
    entry = _jobs().get(key)
    if entry and entry[1] is not None:
        entry[1].cancel()


def watch(keys: Sequence[str]) -> None:
    """Progress of this session's requests among ``keys``: stage, progress bar, queue position
    and a Cancel button; failures with their message and a Try again button.

    The bars of running requests live in a fragment (``_live_progress``) that Streamlit reruns on
    its own every ``POLL_S`` seconds, so the page's script run ends at once: nothing from an
    earlier run (a bar of a request that has since finished, a button) stays on screen while the
    requests run, and a click is handled at once. When a request ends, the fragment reruns the
    whole page, which draws the result (``fetch`` collects it) or the failure. The backend
    computes in its own workers; no script thread waits for it.
    """
    jobs = _jobs()
    failed: list[tuple[str, str, str]] = []
    cancelled: list[str] = []
    live: list[str] = []
    for key in (k for k in keys if k in jobs):
        label, handle, error = jobs[key]
        status = handle.status() if handle is not None else None
        if status is None or status.state == "failed":
            failed.append((key, label, error or (status.message if status else "")))
        elif status.state == "cancelled":
            cancelled.append(key)
        elif status.state != "done":  # a done one is collected by ``fetch`` on the next run
            live.append(key)
    for _key, label, message in failed[:3]:
        st.error(f"**{label}** could not be computed: {state.public_message(message)}", icon="🛑")
    if failed:
        more = f" ({len(failed) - 3} more failed)" if len(failed) > 3 else ""
        st.button(
            f"Try again{more}",
            key=f"retry.{failed[0][0]}",
            on_click=_retry_all,
            args=([k for k, *_ in failed],),
        )
    if cancelled:
        what = (
            f"**{jobs[cancelled[0]][0]}** was"
            if len(cancelled) == 1
            else f"{len(cancelled)} requests were"
        )
        st.info(f"{what} cancelled.", icon="⏹️")
        st.button(
            "Start again", key=f"retry.{cancelled[0]}", on_click=_retry_all, args=(cancelled,)
        )
    if live:
        _live_progress(tuple(live))


LIVE_STATES = ("queued", "running")


@st.fragment(run_every=POLL_S)
def _live_progress(keys: tuple[str, ...]) -> None:
    """The progress bars of running requests, redrawn every ``POLL_S`` seconds (a fragment)."""
    jobs = _jobs()
    statuses = [
        (jobs[k][0], jobs[k][1], jobs[k][1].status())
        for k in keys
        if k in jobs and jobs[k][1] is not None
    ]
    if len(statuses) < len(keys) or any(s.state not in LIVE_STATES for *_, s in statuses):
        st.rerun(scope="app")  # one is done, failed or cancelled: the page draws it
    # A sweep queues many requests: one summary bar then, not a wall of them.
    if len(keys) > 3:
        bar, btn = st.columns([6, 1], vertical_alignment="bottom")
        running = [(lab, s) for lab, _, s in statuses if s.state == "running"]
        now = (
            ", ".join(f"{lab} ({s.stage or 'running'}, {s.progress:.0%})" for lab, s in running)
            or "none yet"
        )
        total = sum(s.progress for *_, s in statuses) / len(statuses)
        bar.progress(
            min(max(total, 0.0), 1.0),
            text=f"**{len(statuses)} requests to go**: {len(statuses) - len(running)} "
            f"waiting in the shared queue; running now: {now}",
        )
        btn.button(
            "Cancel all", key="cancel.all", on_click=_cancel_all, args=(keys,), width="stretch"
        )
        return
    for key, (label, handle, s) in zip(keys, statuses):
        bar, btn = st.columns([6, 1], vertical_alignment="bottom")
        bar.progress(min(max(s.progress, 0.0), 1.0), text=_status_text(label, handle, s))
        btn.button("Cancel", key=f"cancel.{key}", on_click=_cancel, args=(key,), width="stretch")


def _status_text(label: str, handle: Handle, s: Any) -> str:
    if s.state == "queued":
        where = f"position {s.queue_position}" if s.queue_position else "next"
        return f"**{label}**: waiting in the shared queue ({where})"
    shared = (
        " (shared with another session asking for the same)" if (handle.cache == "joined") else ""
    )
    return f"**{label}**: {s.stage or 'running'}{shared} · {s.progress:.0%}"


def _retry_all(keys: list[str]) -> None:
    for key in keys:
        retry(key)


def _cancel_all(keys: list[str]) -> None:
    for key in keys:
        _cancel(key)
