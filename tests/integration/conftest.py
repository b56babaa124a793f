"""Set-up for the integration tests: the command line run in this process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from reprog_core import cli
from reprog_core.backend import service


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """``run_cli(*argv, check=True)``: ``reprog_core.cli.main(argv)`` in this process, its exit
    code, stdout and stderr; on the test's own cache (``REPROG_CACHE_DIR=tmp_path/cache``) with a
    process-wide backend of its own, closed afterwards."""
    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(service, "_default", None)
    backend_logger = logging.getLogger("reprog_core.backend")
    level = backend_logger.level  # main() quiets it; other tests' caplog must not see that

    def run(*argv: str, check: bool = True) -> Ran:
        capsys.readouterr()
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"exit {code}: {err}")
        return Ran(code, out, err)

    yield run
    backend_logger.setLevel(level)
    with service._default_lock:
        if service._default is not None:
            service._default.close()
