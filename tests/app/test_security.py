"""The trust boundaries of SECURITY.md on whole pages (Streamlit AppTest): a server path pasted
into a URL, and a failed job's error text. The functions behind them: tests/unit/test_security.py.
"""

from __future__ import annotations

import pytest

from tests.app.pages import goto
from tests.unit.test_security import CLIP, ROOT, _in_thread, _no_reader, server_files

__all__ = ["server_files"]  # the fixture, shared with the unit tests

pytestmark = pytest.mark.slow


def test_url_with_a_server_path_on_the_page(server_files) -> None:
    """The whole app: a pasted URL with weights=<FIFO path> warns, runs with 'random', and the
    server never opens the FIFO."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.query_params.update({**CLIP, "weights": str(server_files["fifo"])})
    goto(at, "learn")  # a page that starts no computation
    _in_thread(at.run, 150)
    assert not at.exception
    assert any("must not be a file path" in w.value for w in at.warning)
    assert at.session_state["_cfg"]["weights"] == "random"
    assert _no_reader(server_files["fifo"])


def test_job_error_on_the_page_is_sanitised() -> None:
    """A real failure whose message names a server folder (a data set with no local copy)."""
    import os
    import time

    from streamlit.testing.v1 import AppTest

    from reprog_core.runtime import data_root

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    # A family that trains its source on source_data (the default classifier comes pretrained).
    at.query_params.update({"source_family": "cnn", "source_data": "cifar10", "source_epochs": "1"})
    deadline = time.monotonic() + 120
    at.run()
    while not at.error and time.monotonic() < deadline:  # the browser's polling, by hand
        time.sleep(0.5)
        at.run()
    errors = " ".join(e.value for e in at.error)
    assert "could not be computed" in errors and "cifar10" in errors
    assert str(data_root()) not in errors and os.sep + "tmp" not in errors
    assert "server path" in errors
