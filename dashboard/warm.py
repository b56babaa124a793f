"""Warm the default views when the server starts, so the first visitor meets cached results.

``make app`` starts the server; the first script run in the process calls ``start()``, which
queues the default Explore result and the default Compare column on the shared backend from a
daemon thread (the server never waits for it), then computes the Learn page's default
demonstrations into Streamlit's cache (``dashboard/demos_cache.py``). After those, at low
priority (one at a time, so a visitor's request never waits behind more than one of them), it
computes the what-ifs the pages offer one click away (``reprog_core.presets``: the one-click
comparisons and the other set-ups). A visitor who asks for the same configuration meanwhile
joins the running computation instead of starting another one.

``REPROG_WARM=0`` (``make app WARM=0``) turns it off.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from reprog_core import presets
from reprog_core.config import ExperimentConfig

log = logging.getLogger(__name__)
ENV = "REPROG_WARM"
_started = False
_lock = threading.Lock()
_status: dict[str, Any] = {"state": "off", "done": [], "errors": []}


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off", "")


def default_items() -> list[tuple[str, ExperimentConfig, str]]:
    """(task kind, config, label) of what the default pages ask for first
    (``presets.default_views``)."""
    return [("explore", cfg, label) for label, cfg in presets.default_views()]


def what_if_items() -> list[tuple[str, ExperimentConfig, str]]:
    """The what-ifs the pages offer one click away, each once (``presets.what_ifs``)."""
    return [("explore", cfg, label) for label, cfg in presets.what_ifs()]


def status() -> dict[str, Any]:
    """A copy of the warm-up's state: 'off', 'running' or 'done', and what finished or failed."""
    with _lock:
        return {
            "state": _status["state"],
            "done": list(_status["done"]),
            "errors": list(_status["errors"]),
        }


def start(backend: Any, learn_warmers: list[Any] | None = None) -> bool:
    """Start the warm-up once per process (later calls do nothing). Returns True if started."""
    global _started
    with _lock:
        if _started or not enabled():
            return False
        _started = True
        _status["state"] = "running"
    thread = threading.Thread(
        target=_run, args=(backend, list(learn_warmers or [])), name="reprog-warm", daemon=True
    )
    thread.start()
    return True


def _run(backend: Any, learn_warmers: list[Any]) -> None:
    handles = []
    for kind, cfg, label in default_items():
        try:
            handles.append((label, backend.submit(kind, cfg, {})))
        except Exception as exc:  # noqa: BLE001 - a warm-up failure must never reach a visitor
            _note_error(label, exc)
    for warm_demo in learn_warmers:  # cheap, and the Learn page is often the second visited
        label = f"Learn: {getattr(warm_demo, '__name__', 'demo')}"
        try:
            warm_demo()
            _note_done(label)
        except Exception as exc:  # noqa: BLE001
            _note_error(label, exc)
    for label, handle in handles:
        try:
            handle.result()
            _note_done(label)
        except Exception as exc:  # noqa: BLE001
            _note_error(label, exc)
    for kind, cfg, label in what_if_items():  # one at a time: visitors first
        try:
            backend.submit(kind, cfg, {}).result()
            _note_done(label)
        except Exception as exc:  # noqa: BLE001
            _note_error(label, exc)
    with _lock:
        _status["state"] = "done"


def _note_done(label: str) -> None:
    with _lock:
        _status["done"].append(label)


def _note_error(label: str, exc: BaseException) -> None:
    log.warning("warming %s failed: %s", label, exc)
    with _lock:
        _status["errors"].append(f"{label}: {type(exc).__name__}")
