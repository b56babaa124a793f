"""Whether pretrained weights can be downloaded now: environment flags, then a quick probe of
the host (cached for a minute), so that an offline machine fails at once instead of retrying."""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

from reprog_core._compat import import_open_clip

OFFLINE_ENVS = ("HF_HUB_OFFLINE", "REPROG_OFFLINE")
PROBE_TIMEOUT_S = 0.5


_PROBES: dict[tuple[str, int], tuple[float, bool]] = {}
_PROBE_TTL_S = 60.0


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def offline_reason(tag_cfg: dict | None = None) -> str | None:
    """Why downloads are impossible (an env flag, or the host unreachable), or None when online."""
    for var in OFFLINE_ENVS:
        if _env_true(var):
            return f"{var}=1"
    use_hub = not tag_cfg or (tag_cfg.get("hf_hub") and import_open_clip().pretrained.has_hf_hub())
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if use_hub else tag_cfg["url"]
    parsed = urlparse(url)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    if not _reachable(host, port):
        return f"{host}:{port} is unreachable within {PROBE_TIMEOUT_S} s"
    return None


def _reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connect to ``host:port`` within ``timeout`` s, DNS included; cached for a minute.

    The connect runs in a daemon thread because ``socket.create_connection``'s timeout does not
    cover name resolution, which can hang for many seconds on a machine without DNS.
    """
    now = time.monotonic()
    hit = _PROBES.get((host, port))
    if hit and now - hit[0] < _PROBE_TTL_S:
        return hit[1]
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    result = bool(ok)
    _PROBES[(host, port)] = (now, result)
    return result
