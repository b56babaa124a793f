"""Shared test set-up: an isolated cache directory and pinned threads for every test session."""

from __future__ import annotations

import os
import tempfile

# Before anything imports reprog_core.runtime: every test session gets its own cache, so tests never
# read a result a developer computed by hand, and never write into the project's .cache.
os.environ.setdefault("REPROG_CACHE_DIR", tempfile.mkdtemp(prefix="reprog-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The dashboard warms its default views when a server starts; in tests (AppTest, the browser
# test's server) that would compute the default views in the background.
# tests/integration/test_warm.py turns it on where it is the subject.
os.environ.setdefault("REPROG_WARM", "0")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("REPROG_THREADS", "0")) or min(2, os.cpu_count() or 1))
