"""The trust boundaries of SECURITY.md, attacked with real malicious files (the functions at each
boundary; stored source models: tests/integration/test_security.py; whole pages:
tests/app/test_security.py).

* A pickle whose ``__reduce__`` would run code (it would create a canary file) must not run.
* A URL must not make the server open a file: ``weights=../../etc/passwd``, an absolute path, a
  FIFO (opening one for reading blocks, so a test that returns at all shows it was not opened).
* Bounded URL ranges, escaped markdown, sanitised error text, checksummed source models, learning
  rates, ``sweep --out``, and Compare's clamping.
"""

from __future__ import annotations

import builtins
import gzip
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from reprog_core.data import DatasetError, load_dataset
from reprog_core.data.safe_pickle import UnsafePickleError, restricted_loads


# ------------------------------------------------------------------------------ malicious pickles
class _RunsCode:
    """Unpickling this executes Python that writes ``canary``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.canary)!r}, 'w').write('ran')",))


def _evil_pickle(canary: Path, protocol: int = 2, wrap: bool = True) -> bytes:
    payload = _RunsCode(canary)
    obj = {"data": np.zeros((1, 3072), np.uint8), "labels": [payload]} if wrap else payload
    return pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_refuses_code(tmp_path: Path, protocol: int) -> None:
    canary = tmp_path / "canary"
    blob = _evil_pickle(canary, protocol)
    with pytest.raises(UnsafePickleError, match="builtins.exec"):
        restricted_loads(blob)
    assert not canary.exists()
    # The same bytes really do run code under plain pickle (the test's own control).
    pickle.loads(blob)
    assert canary.read_text() == "ran"


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_reads_what_cifar_holds(protocol: int) -> None:
    obj = {
        "batch_label": "training batch 1 of 5",
        "labels": [1, 2, 3],
        "data": np.arange(12, dtype=np.uint8).reshape(2, 6),
        "filenames": ["a.png", b"b.png"],
        "scalar": np.int64(7),
        "f": np.float32(0.5) * np.ones((2, 2), np.float32, order="F"),
    }
    out = restricted_loads(pickle.dumps(obj, protocol=protocol), encoding="latin1")
    assert out["labels"] == [1, 2, 3] and out["filenames"] == ["a.png", b"b.png"]
    np.testing.assert_array_equal(out["data"], obj["data"])
    np.testing.assert_array_equal(out["f"], obj["f"])
    assert out["scalar"] == 7


def test_restricted_unpickler_refuses_other_globals() -> None:
    for obj in ({1, 2}, Path("/x"), np.random.default_rng(0)):
        with pytest.raises(UnsafePickleError):
            restricted_loads(pickle.dumps(obj, protocol=2))


def _write_cifar10(root: Path, evil: bytes | None, which: str = "data_batch_3") -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"c{i}" for i in range(10)]
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"labels": list(range(10)), "data": np.zeros((10, 3072), np.uint8)}
        (folder / f).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    if evil is not None:
        (folder / which).write_bytes(evil)


@pytest.mark.parametrize("which", ["data_batch_3", "batches.meta", "test_batch"])
def test_cifar_data_root_with_a_code_running_pickle(tmp_path: Path, which: str) -> None:
    canary = tmp_path / "canary"
    root = tmp_path / f"root-{which}"
    _write_cifar10(root, _evil_pickle(canary), which)
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", root=root)
    assert not canary.exists(), "loading the data root ran code from a pickle"
    msg = str(err.value)
    assert "refused" in msg and "builtins.exec" in msg and which in msg
    assert "\n" not in msg


def test_cifar_clean_root_still_loads(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "ok", None)
    ds = load_dataset("cifar10", root=tmp_path / "ok")
    assert tuple(ds.x_train.shape) == (50, 3, 32, 32) and ds.classes[0] == "c0"


def test_animal_gz_pickles_are_read_restricted(tmp_path: Path) -> None:
    from reprog_core.data.offline import _read_pickle_gz

    canary = tmp_path / "canary"
    evil = tmp_path / "animal_data_version_3.gz"
    with gzip.open(evil, "wb") as f:
        f.write(_evil_pickle(canary, protocol=4, wrap=False))
    with pytest.raises(DatasetError, match="refused"):
        _read_pickle_gz(evil)
    assert not canary.exists()
    good = tmp_path / "good.gz"
    with gzip.open(good, "wb") as f:
        pickle.dump(np.ones((3, 28, 28), np.uint8), f)
    assert _read_pickle_gz(good).shape == (3, 28, 28)


def test_no_plain_unpickling_left_in_the_package() -> None:
    """Audit: no module of reprog_core or dashboard calls pickle.load(s) / np.load with pickles /
    torch.load without weights_only=True, except the restricted unpickler itself and the worker
    process reading the task its own server sent over their private socket pair (SECURITY.md;
    ``Connection.recv`` unpickles every message of that channel anyway)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*(root / "reprog_core").rglob("*.py"), *(root / "dashboard").rglob("*.py")]:
        if path.name == "safe_pickle.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            bad = (
                "pickle.load" in code
                or "allow_pickle=True" in code
                or ("torch.load(" in code and "weights_only=True" not in code)
            )
            ipc = path.name == "worker.py" and code.strip() == "return pickle.loads(task)"
            if bad and not ipc:
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, offenders


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# ------------------------------------------------------------------------------ the URL boundary
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `dashboard` is an app folder next to the library

CLIP = {"source_family": "clip-cnn", "backbone": "tiny-vit"}


def _no_reader(fifo: Path) -> bool:
    """True when nobody has ``fifo`` open for reading (opening its write end would then fail)."""
    import errno
    import os

    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc.errno == errno.ENXIO
    os.close(fd)
    return False


def _in_thread(fn, timeout: float = 60.0):
    """``fn()`` in a thread; fails (instead of hanging) if it blocks, e.g. on opening a FIFO."""
    import threading

    out: list = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's own thread
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked: something opened the FIFO"
    if errors:
        raise errors[0]
    return out[0]


@pytest.fixture
def server_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO (opening it for reading blocks) and a canary checkpoint file, by absolute path."""
    import os

    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    canary = tmp_path / "canary.pt"
    canary.write_bytes(b"not read")
    return {"fifo": fifo, "canary": canary}


@pytest.mark.parametrize(
    "weights",
    [
        "../../../../etc/passwd",
        "/proc/self/environ",
        "FIFO",
        "CANARY",
        "~/x.pt",
        "./x.pt",
        "a/b.pt",
    ],
)
def test_url_weights_never_name_a_server_file(weights: str, server_files) -> None:
    from dashboard import state

    weights = {"FIFO": str(server_files["fifo"]), "CANARY": str(server_files["canary"])}.get(
        weights, weights
    )
    cfg, warnings = _in_thread(lambda: state.parse_config({**CLIP, "weights": weights}))
    assert cfg.weights == "random" and cfg.backbone == "tiny-vit"
    assert len(warnings) == 1 and "must not be a file path" in warnings[0]
    assert _no_reader(server_files["fifo"])
    # The Compare page's variants go through the same check.
    over, w = state.parse_overrides("c2", f"weights:{weights}", cfg, ["weights"])
    assert over == {} and "must not be a file path" in w[0]
    # So do the sidebar and Compare's typed-in values.
    problem = state.server_problem(cfg.replace(weights=weights))
    assert problem and "must not be a file path" in problem


def test_url_backbone_is_checked_against_the_registry() -> None:
    from dashboard import state

    for bad in ("no-such-model", "hf-hub:evil/model", "local-dir:/etc"):
        cfg, warnings = state.parse_config({**CLIP, "backbone": bad})
        assert cfg.backbone == state.DEFAULT.backbone
        assert any("backbone" in w and "unknown backbone" in w for w in warnings), warnings
    cfg, warnings = state.parse_config(CLIP)
    assert cfg.backbone == "tiny-vit" and warnings == []


def test_url_may_name_a_checkpoint_of_the_weights_folder(tmp_path: Path, monkeypatch) -> None:
    from dashboard import state
    from reprog_core.source_model.clip import load_backbone, save_checkpoint

    folder = tmp_path / "weights"
    save_checkpoint(load_backbone("tiny-vit", "random", "cpu", seed=3), folder / "mine.pt")
    (folder / ".hidden.pt").write_bytes(b"x")
    # Unset: a name is refused like any other unknown value.
    monkeypatch.delenv("REPROG_WEIGHTS_DIR", raising=False)
    cfg, warnings = state.parse_config({**CLIP, "weights": "mine.pt"})
    assert cfg.weights == "random" and "REPROG\\_WEIGHTS\\_DIR" in warnings[0]
    monkeypatch.setenv("REPROG_WEIGHTS_DIR", str(folder))
    cfg, warnings = state.parse_config({**CLIP, "weights": "mine.pt"})
    assert cfg.weights == "mine.pt" and warnings == []
    for bad in (".hidden.pt", "../weights/mine.pt", str(folder / "mine.pt")):
        cfg, warnings = state.parse_config({**CLIP, "weights": bad})
        assert cfg.weights == "random", bad
        # The message (past the echo of the URL's own text) never shows where the folder is.
        assert str(folder) not in warnings[0].split("is not valid", 1)[1]
    bb = load_backbone("tiny-vit", "mine.pt", "cpu")
    assert bb.weights_label == "mine.pt" and bb.weights_kind == "file"


# ------------------------------------------------------------------------------ page text
def _split_code_spans(md: str) -> tuple[str, list[str]]:
    """CommonMark's code-span rule: (the text outside code spans, the spans' contents)."""
    outside, spans, i = [], [], 0
    while i < len(md):
        if md[i] == "\\" and i + 1 < len(md):
            outside.append(md[i : i + 2])
            i += 2
            continue
        if md[i] != "`":
            outside.append(md[i])
            i += 1
            continue
        j = i
        while j < len(md) and md[j] == "`":
            j += 1
        k, close = j, None
        while k < len(md):
            if md[k] != "`":
                k += 1
                continue
            m = k
            while m < len(md) and md[m] == "`":
                m += 1
            if m - k == j - i:
                close = (k, m)
                break
            k = m
        if close is None:
            outside.append(md[i:j])
            i = j
            continue
        content = md[j : close[0]]
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append(content)
        i = close[1]
    return "".join(outside), spans


INJECT = "x` **MDINJ** `y"


def test_url_text_cannot_break_out_of_code_spans() -> None:
    from dashboard import state

    msgs = []
    _, w = state.parse_config({"depth": INJECT, f"k{INJECT}": "1"})
    msgs += w
    msgs += state.parse_choices("transforms", INJECT, ["vp", "fc"], ["vp"])[1]
    msgs += state.parse_int_list("depths", INJECT, 1, 6, [1])[1]
    msgs += state.parse_number("alpha", INJECT, 0, 3, 1.0)[1]
    msgs += state.parse_choice("stat", INJECT, ["a"], "a")[1]
    msgs += state.parse_overrides("c2", f"depth:{INJECT},{INJECT}", state.DEFAULT, ["depth"])[1]
    msgs += state.parse_config({"lr": "**bold** [link](http://x)"})[1]
    assert len(msgs) >= 8
    for msg in msgs:
        outside, spans = _split_code_spans(msg)
        # User text outside a code span is there only backslash-escaped: it renders literally.
        for raw in ("**MDINJ**", "**bold**", "[link]("):
            assert raw not in outside, msg
    # Each piece of user text is shown whole, inside one code span.
    all_spans = [s for msg in msgs for s in _split_code_spans(msg)[1]]
    assert sum(INJECT in s for s in all_spans) >= 7 and any(
        "**bold** [link]" in s for s in all_spans
    )
    assert state.md_code(INJECT) == "``x` **MDINJ** `y``"
    assert _split_code_spans(state.md_code("`a``"))[1] == ["`a``"]
    assert _split_code_spans(state.md_code("a\n\n# h"))[1] == ["a  # h"]


def test_error_text_on_a_page_has_no_server_path_or_pid() -> None:
    from dashboard import state

    raw = (
        "checkpoint file not found: /work/main/.cache/x.pt (from --weights '../../etc/passwd'); "
        "the worker process (48213) died (killed); pid 77 at C:\\srv\\w.pt or ~/w.pt; see "
        "https://huggingface.co/x, 1/2 of N; **b**"
    )
    out = state.public_message(raw)
    for leak in ("/work", "etc/passwd", "48213", "77", "srv", "~/w"):
        assert leak not in out, leak
    assert "https\\://huggingface.co/x" in out and "1/2" in out and "\\*\\*b\\*\\*" in out
    assert "\n" not in state.public_message("a\nb")


# ------------------------------------------------------------------------------ bounded input
def test_url_ranges_are_bounded_before_they_are_built() -> None:
    import tracemalloc

    from dashboard import state

    tracemalloc.start()
    values, warnings = state.parse_int_list("depths", "1-5000000", 1, 6, [1, 2])
    values2, _ = state.parse_int_list("widths", "1-5000000,3-2000000", 1, 1024, [16])
    huge, _ = state.parse_int_list("depths", "1-300000000000", 1, 6, [1])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert values == [1, 2, 3, 4, 5, 6] and "outside 1 to 6" in warnings[0]
    assert values2 == list(range(1, 1025))
    assert huge == [1, 2, 3, 4, 5, 6]
    assert peak < 2_000_000, peak  # clamped first: the millions of values were never built


def test_compare_clamps_over_limit_values_with_a_warning() -> None:
    from dashboard import state

    limits = state.ranges({"max_n_kernel": 2048, "max_steps": 5000})
    over, warnings = state.parse_overrides(
        "c2",
        "n_kernel:100000,steps:99999,depth:9,transform:fc",
        state.DEFAULT,
        ["n_kernel", "steps", "depth", "transform"],
        limits,
    )
    assert over == {"n_kernel": 2048, "steps": 5000, "depth": 6, "transform": "fc"}
    text = " ".join(warnings)
    assert "n_kernel:100000" in text and "server limit 2048" in text
    assert "steps:99999" in text and "server limit 5000" in text
    over, warnings = state.parse_overrides("c2", "n_kernel:1", state.DEFAULT, ["n_kernel"], limits)
    assert over == {} and "not valid" in warnings[0]  # below the minimum: dropped, as before


# ------------------------------------------------------------------------------ CLI boundary
def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from reprog_core.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("lr", ["inf", "-inf", "nan", "-0.5"])
def test_cli_rejects_bad_learning_rates(lr: str, capsys) -> None:
    rc, err = _cli(["fit", f"--lr={lr}", "--steps", "1"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "lr must be a finite number > 0" in err


def test_config_keeps_lr_zero_as_the_default_sentinel() -> None:
    from reprog_core.config import ConfigError, ExperimentConfig

    assert ExperimentConfig(lr=0.0).lr == 0.0  # the "transform's default" sentinel stays valid
    assert ExperimentConfig(lr=0.1).lr == 0.1
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ConfigError):
            ExperimentConfig(lr=bad)


@pytest.mark.parametrize(
    "flags, what",
    [
        (["--backbone", "no-such-model"], "--backbone: unknown backbone"),
        (["--backbone", "tiny-vit", "--weights", "no-such-tag"], "--weights: unknown weights"),
        (["--backbone", "tiny-vit", "--weights", "/no/such/file.pt"], "--weights: checkpoint"),
    ],
)
def test_cli_bad_backbone_or_weights_exit_2(flags: list[str], what: str, capsys) -> None:
    rc, err = _cli(["train-source", "--source-family", "clip-cnn", *flags], capsys)
    assert rc == 2 and what in err and err.count("\n") == 1


def test_cli_may_load_a_local_checkpoint_by_path(tmp_path: Path) -> None:
    from reprog_core.cli import build_parser, config_from_args
    from reprog_core.source_model.clip import load_backbone, save_checkpoint

    path = save_checkpoint(load_backbone("tiny-vit", "random", "cpu"), tmp_path / "local.pt")
    args = build_parser().parse_args(
        ["fit", "--source-family", "clip-cnn", "--backbone", "tiny-vit", "--weights", str(path)]
    )
    assert config_from_args(args).weights == str(path)


def test_sweep_out_unwritable_fails_before_computing(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, err = _cli(
        ["sweep", "--depths", "1", "--transforms", "vp", "--out", str(blocker / "sub")], capsys
    )
    assert rc == 2 and err.count("\n") == 1
    assert "--out" in err and "cannot write" in err
    assert "[1/1]" not in err  # no point was computed


# ------------------------------------------------------------------------------ URL fuzz
def test_url_fuzz_200_urls_never_open_or_run_a_server_file(tmp_path: Path, monkeypatch) -> None:
    """200 random URLs (any field, any value: good ones, paths, links out of the weights folder,
    a FIFO, a code-running pickle, markdown, huge ranges, long and odd text), each parsed as the
    dashboard does (the config, a Compare variant, the server check): no exception, every warning
    one line, no weights that name a path or a link out of the folder, the FIFO never opened and
    the canary pickle never run."""
    import os
    import random

    from dashboard import state

    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _RunsCode(canary)}))
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mine.pt").write_bytes(b"a checkpoint (never loaded by parsing)")
    (folder / "out-link.pt").symlink_to(evil)
    (folder / "passwd.pt").symlink_to("/etc/passwd")
    (folder / "fifo-link.pt").symlink_to(fifo)
    monkeypatch.setenv("REPROG_WEIGHTS_DIR", str(folder))
    refused = {"out-link.pt", "passwd.pt", "fifo-link.pt"}
    hostile = [
        *("../../../../etc/passwd", "/proc/self/environ", str(fifo), str(evil), "~/x.pt"),
        *("./x.pt", "a/b.pt", "out-link.pt", "passwd.pt", "fifo-link.pt", "mine.pt", ".x.pt"),
        *("random", "openai", "imagenet", "tiny-vit", "tiny-rn", "hf-hub:evil/m", "local-dir:/"),
        *("clip-cnn", "cnn", "vp", "fc", "digits", "animal", "1", "0", "-3", "6", "99999999"),
        *("1-300000000", "1,2,3", "nan", "inf", "-inf", "1e308", "0.05", "", " ", "true"),
        *(INJECT, "**bold** [link](http://x)", "a\n\n# h", "\u00e9\U0001f600", "x" * 5000),
        *("depth:6,transform:fc", "weights:../../etc/passwd", f"weights:{fifo}", "n_kernel:1e9"),
    ]
    keys = [*state.URL_FIELDS, "c2", "depths", "data_root", "no-such-key", INJECT]
    rng = random.Random(17)
    urls = []
    for _ in range(200):
        url = {rng.choice(keys): rng.choice(hostile) for _ in range(rng.randint(1, 6))}
        if rng.random() < 0.5:  # often enough, a clip-cnn config whose weights get checked
            url.update({**CLIP, "weights": rng.choice(hostile)})
        urls.append(url)

    def parse_all() -> int:
        for url in urls:
            cfg, warnings = state.parse_config(url, extra_keys=("c2", "depths"))
            over, more = state.parse_overrides("c2", url.get("c2", ""), cfg, state.URL_FIELDS)
            problem = state.server_problem(cfg.replace(**over)) or ""
            assert cfg.weights not in refused and over.get("weights") not in refused, url
            for weights in (cfg.weights, over.get("weights", "")):
                assert "/" not in weights and not weights.startswith((".", "~")), url
            for text in [*warnings, *more, problem]:
                assert "\n" not in text, (url, text)
        return len(urls)

    assert _in_thread(parse_all, 120) == 200  # fails, instead of hanging, if the FIFO is opened
    assert _no_reader(fifo)
    assert not canary.exists(), "parsing a URL ran the canary pickle"
