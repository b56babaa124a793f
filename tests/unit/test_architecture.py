"""The shape of the code, checked: the layers a newcomer is told about hold.

- the import graph of the library and the app has no cycle (every import counts, lazy ones too);
- no computation imports the backend: the pipeline's stages get what an earlier stage stored as
  arguments (``serving.py`` joins the two; ``sweep/`` and ``cli.py`` drive the backend);
- no product file is over 500 lines;
- results are read as typed records (``reprog_core/results.py``): outside that module and the
  job boundaries, no code indexes a record by a string (a renamed field must fail at import or
  in a test, not draw "—").
"""

from __future__ import annotations

import ast
import dataclasses
import graphlib
from pathlib import Path

import pytest

from reprog_core import results

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reprog_core", "dashboard")
MAX_LINES = 500


def _product_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (``from a import b`` is ``a.b`` when
    that is a module, else ``a``)."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        out |= {n for n in names if n in modules and n != me}
    return out


def _graph() -> dict[str, set[str]]:
    files = _product_files()
    modules = {_module(p) for p in files}
    return {_module(p): _imports(p, modules) for p in files}


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    # A package's own __init__ re-exporting its submodules is not a cycle of design: leave out
    # the edges from a package to the modules inside it.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    try:
        list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


# The service layer: what drives the backend. Everything else in the library computes.
SERVICE = ("reprog_core.backend", "reprog_core.serving", "reprog_core.sweep", "reprog_core.cli")


def test_no_computation_imports_the_backend() -> None:
    for module, deps in _graph().items():
        if not module.startswith("reprog_core") or module.startswith(SERVICE):
            continue
        if module in ("reprog_core", "reprog_core.__main__"):
            continue
        bad = sorted(
            d for d in deps if d.startswith(("reprog_core.backend", "reprog_core.serving"))
        )
        assert not bad, f"{module} imports {bad}: a computation must not know its service"


def test_no_product_file_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _product_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split along their seams: {long}"


# ---------------------------------------------------------------------------- typed records
# Where a stored dict may be read by key: the records' own module, and the boundaries that parse
# what leaves the backend or a file (the backend itself handles results as opaque JSON).
BOUNDARY = {
    "reprog_core/results.py",
    "dashboard/jobs.py",  # the dashboard's job client
    "reprog_core/sweep/outputs.py",  # a saved sweep's results.json
}
# Dicts that are not records, read by key on purpose: (file, the name indexed) -> what it is.
NOT_RECORDS = {
    ("reprog_core/ntk/records.py", "info"): "the kernel engine's facts about one computation",
    ("reprog_core/ntk/records.py", "out"): "the source NTK's draws, before they become a record",
    ("reprog_core/ntk/records.py", "dyn"): "ntk_dynamics' curves, before they become a record",
    ("reprog_core/ntk/source.py", "info"): "the kernel engine's facts about one computation",
    ("dashboard/serve.py", "scope"): "an ASGI request scope",
    ("dashboard/views/learn.py", "demo"): "a Learn demonstration's computed values",
    ("reprog_core/analysis/depth_control.py", "r"): "a row of the depth-controlled table",
    ("reprog_core/cli.py", "entry"): "one line of the warm-up's progress",
    ("reprog_core/sweep/report.py", "grid"): "a grid's description (SweepGrid.to_dict)",
    ("dashboard/views/learn.py", "wdemo"): "a Learn demonstration's computed values",
}
RECORD_TYPES = (
    results.ExperimentRecord,
    results.SourceResult,
    results.FitResult,
    results.FitCurves,
    results.KernelResult,
    results.SpectrumStats,
    results.KernelRegime,
    results.Dynamics,
    results.SweepRecord,
)
# Record fields that are also columns of a sweep row (a table, indexed by column name on
# purpose), or common words other dicts use as keys (page parameters, demo results, plotly).
TABLE_OR_COMMON = set(results.ROW_COLUMNS) | {
    "n",
    "step",
    "steps",
    "lr",
    "loss",
    "key",
    "mapping",
    "eigenvalues",
    "alignment",
    "condition_number",
    "versions",
    "seconds",
    "config",
    "history",
}
RECORD_FIELDS = {f.name for t in RECORD_TYPES for f in dataclasses.fields(t)} - TABLE_OR_COMMON
# Names under which code holds a record: indexing these by any string is reading a record.
RECORD_NAMES = {
    "fit",
    "kernel",
    "src",
    "source",
    "record",
    "rec",
    "kr",
    "stats",
    "curves",
    "result",
}


def _string_reads(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, the indexed name or '', the key) for every read ``x["key"]`` and ``x.get("key")``
    (writing a key is building a dict, not reading a record)."""
    found = []
    for node in ast.walk(tree):
        target, key = None, None
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.ctx, ast.Load)
        ):
            target, key = node.value, node.slice.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            target, key = node.func.value, node.args[0].value
        if isinstance(key, str):
            name = target.id if isinstance(target, ast.Name) else ""
            found.append((node.lineno, name, key))
    return found


def test_records_are_read_as_types_outside_the_boundary() -> None:
    offences = []
    for path in _product_files():
        rel = str(path.relative_to(ROOT))
        if rel in BOUNDARY or rel.startswith("reprog_core/backend/"):
            continue
        for line, name, key in _string_reads(ast.parse(path.read_text())):
            if (rel, name) in NOT_RECORDS:
                continue
            if key in RECORD_FIELDS or name in RECORD_NAMES:
                offences.append(f"{rel}:{line}: {name or '…'}[{key!r}]")
    assert not offences, "index a typed record by attribute:\n" + "\n".join(offences)


def test_the_record_check_sees_a_string_read() -> None:
    """The check above can fail: it finds both forms."""
    tree = ast.parse('fit["curves"]\nx.get("kernel_regime")\nrow["target_test_acc"]\n')
    reads = _string_reads(tree)
    assert (1, "fit", "curves") in reads and (2, "x", "kernel_regime") in reads
    assert "kernel_regime" in RECORD_FIELDS and "curves" in RECORD_FIELDS
    assert "target_test_acc" not in RECORD_FIELDS  # a row column: tables are indexed by name
