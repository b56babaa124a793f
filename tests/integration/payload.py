"""A cheap backend task for the store's tests (test_store, test_integrity): it counts its runs
in a file, so a test can tell a recomputation from a cache hit, and pads its result to any size
(over 32 KiB, diskcache keeps it in a value file of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reprog_core.backend import Progress
from reprog_core.config import ExperimentConfig

CFG = ExperimentConfig(source_family="cnn")  # a family whose key includes the depth


def payload_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    """Counts its runs in ``params['counter']``; returns ``params['pad']`` characters."""
    with open(params["counter"], "a") as f:
        f.write("run\n")
    return {"depth": cfg.depth, "pad": "x" * int(params.get("pad", 0))}


def runs(counter: Path) -> int:
    return len(counter.read_text().split()) if counter.exists() else 0
