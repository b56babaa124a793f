"""The files a sweep writes, and ``load_results`` to read them back (the dashboard uses it).

``<out>/results.json`` (strict JSON: NaN is written as null) holds the whole record
(``results.SweepRecord``; the format is described in ``reprog_core/sweep/__init__.py``), and
``load_results`` is where a file becomes that record again: the one place a saved sweep is read
by key. ``<out>/results.csv`` holds ``rows`` alone, one
line per successful point, columns as in ``columns`` (NaN is an empty cell).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reprog_core.config import ConfigError
from reprog_core.results import SweepRecord, json_safe

FORMAT = "reprog-sweep"
FORMAT_VERSION = 1
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_HTML = "report.html"

# Row columns that hold text (or text-or-None); every other column is numeric, and None read
# from JSON means NaN there.
TEXT_COLUMNS = frozenset(
    {
        "source_family",
        "backbone",
        "weights",
        "source_data",
        "target",
        "transform",
        "mapping",
        "kernel_form",
        "regime",
        "stopped",
        "key",
        "cache",
        "executor",
    }
)


def machine_info() -> dict[str, Any]:
    """Where the sweep ran: OS, Python, CPU count, and the CUDA devices torch sees."""
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": bool(gpus),
        "gpus": gpus,
    }


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in first-seen order (``sweep_row``'s order, then the extras)."""
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def write_results(
    sweep: SweepRecord | Mapping[str, Any], out: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write ``results.json`` and ``results.csv`` into folder ``out`` (created), each file
    atomically, so a reader (the dashboard) never sees half a file. Returns their paths.
    ``sweep``: the record, or its fields as a mapping (at least ``format``, ``format_version``
    and ``rows``)."""
    if not isinstance(sweep, SweepRecord):
        sweep = SweepRecord.from_dict(dict(sweep))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(sweep.to_dict()), indent=1, allow_nan=False, default=str)
    paths = {"json": folder / RESULTS_JSON, "csv": folder / RESULTS_CSV}
    _atomic_write_text(paths["json"], text + "\n")
    cols = sweep.columns or columns_of(sweep.rows)
    _atomic_write_text(paths["csv"], _csv_text(sweep.rows, cols))
    return paths


def _csv_text(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in cols})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""  # pandas and spreadsheets read an empty cell as missing
    return value


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp makes the file private (0600); results are meant to be read by others (the
        # dashboard's server may run as another user).
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(path: str | os.PathLike[str]) -> SweepRecord:
    """A sweep's record from its ``results.json`` (``path`` is the file or its folder).

    Numeric row values that were NaN (null in the file) come back as ``float('nan')``, so the
    rows can go straight into the figure builders or ``pandas.DataFrame(sweep.rows)``.
    Raises ``FileNotFoundError`` if there is no results file, ``ValueError`` if it is not a
    sweep record of a format version this code reads.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_JSON
    if not p.is_file():
        raise FileNotFoundError(f"no sweep results at {p} (expected a {RESULTS_JSON} file)")
    try:
        sweep = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(sweep, dict) or sweep.get("format") != FORMAT:
        raise ValueError(f'{p} is not a sweep results file (no "format": "{FORMAT}")')
    version = sweep.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{p} has format_version {version!r}; this code reads up to {FORMAT_VERSION}"
        )
    sweep["rows"] = [
        {k: (math.nan if v is None and k not in TEXT_COLUMNS else v) for k, v in r.items()}
        for r in sweep.get("rows") or []
    ]
    try:
        return SweepRecord.from_dict({**sweep, "path": str(p.parent)})
    except (TypeError, ValueError, ConfigError) as exc:
        raise ValueError(f"{p} is not a sweep record this code reads ({exc})") from None
