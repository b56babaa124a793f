"""The command line: ``reprog_core.cli.main(argv)`` in this process (its exit code, stdout and
stderr through ``capsys``), on tiny configs through the real backend; one subprocess smoke test of
``python -m reprog_core`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reprog_core.source_model.clip import loading, offline
from tests.configs import PIXEL_FLAGS

TINY = [  # the pixel pair, tiny; flags after it override it
    *PIXEL_FLAGS,
    "--width",
    "8",
    "--depth",
    "1",
    "--source-per-class",
    "20",
    "--source-epochs",
    "1",
    "--target-per-class",
    "15",
    "--steps",
    "20",
    "--eval-every",
    "10",
    "--n",
    "12",
]


def test_python_m_reprog_core_smoke(tmp_path):
    """The one subprocess: the module entry point, its exit code and its JSON on stdout."""
    env = {
        **os.environ,
        "REPROG_CACHE_DIR": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "REPROG_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "reprog_core", "datasets", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    names = {d["name"] for d in json.loads(proc.stdout)["datasets"]}
    assert {"digits", "animal", "cifar10"} <= names


def test_datasets_lists_offline_and_downloadable_sets(run_cli):
    out = json.loads(run_cli("datasets", "--json").stdout)
    names = {d["name"]: d for d in out["datasets"]}
    for name in ("digits", "animal", "lfw-faces", "shapes", "mnist"):
        assert names[name]["offline"]
    for name in ("cifar10", "cifar100", "svhn", "stl10", "mnist-full", "gtsrb"):
        assert not names[name]["offline"]
    # Fashion-MNIST is offline exactly where Debian's package put its files.
    debian = os.path.isdir("/usr/share/datasets/fashion-mnist")
    if not os.environ.get("REPROG_FASHION_MNIST_DIR"):
        assert names["fashion-mnist"]["offline"] == debian


@pytest.mark.slow
def test_fit_json_has_the_documented_fields_and_is_cached(run_cli):
    first = json.loads(run_cli("fit", "--json", "--transform", "fc", *TINY).stdout)
    for key in (
        "config",
        "weights",
        "source_test_acc",
        "target_test_acc",
        "baseline_test_acc",
        "curves",
        "cache",
    ):
        assert key in first, key
    assert first["weights"] == "none" and first["cache"] == "computed"
    assert first["config"]["transform"] == "fc"
    assert len(first["curves"]["train_loss"]) == 20
    second = json.loads(run_cli("fit", "--json", "--transform", "fc", *TINY).stdout)
    assert second["cache"] == "hit"
    assert second["target_test_acc"] == first["target_test_acc"]


def test_train_source_json(run_cli):
    out = json.loads(run_cli("train-source", "--json", *TINY).stdout)
    assert 0 <= out["source_test_acc"] <= 1 and out["weights"] == "none"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fit", "--depth", "three"], "--depth"),
        (["fit", "--transform", "zoom"], "--transform"),
        (["fit", "--no-such-flag"], "--no-such-flag"),
        (["fit", "--depth", "0"], "depth must be between"),
        (["fit", "--target", "imagenet"], "unknown data set"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(run_cli, args, needle):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_offline_weight_tag_fails_fast_and_says_how_to_supply_weights(run_cli, monkeypatch):
    """Offline (HF_HUB_OFFLINE=1) and not cached: refused from the flag alone, without probing the
    host or handing the tag to open_clip (which would retry for ~46 s)."""
    calls: list[str] = []
    monkeypatch.setattr(offline, "_reachable", lambda *a, **k: calls.append("probe") or False)
    open_clip = loading.import_open_clip()
    monkeypatch.setattr(
        open_clip, "create_model", lambda *a, **k: calls.append("create_model") or 1 / 0
    )
    proc = run_cli(
        "train-source",
        *TINY,  # first: the flags after it override its pixel family
        "--source-family",
        "clip-cnn",
        "--backbone",
        "ViT-B-32",
        "--weights",
        "openai",
        check=False,
    )
    assert proc.returncode == 1
    assert "--weights" in proc.stderr and "Traceback" not in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr  # the reason: the flag, not a failed download
    assert calls == []  # no network probe, no download attempt


def test_ntk_json_fields_and_over_budget_refusal(run_cli, monkeypatch):
    out = json.loads(run_cli("ntk", "--json", *TINY).stdout)
    for key in (
        "config",
        "weights",
        "method",
        "kernel",
        "n",
        "eigenvalues",
        "lambda_max",
        "lambda_min",
        "rank",
        "rank_tol",
        "effective_rank",
        "condition_number",
        "alignment",
        "seconds",
        "cache",
    ):
        assert key in out, key
    assert out["method"] == "structured" and out["n"] == 12 and out["kernel"] == "trace"
    assert out["eigenvalues"] == sorted(out["eigenvalues"], reverse=True)
    # The generic Jacobian of fc (P ~ 7.2M) for 12 samples needs ~3.5 GB of float64 Jacobian
    # and more: over a 1 GiB budget it is refused before anything is allocated.
    monkeypatch.setenv("REPROG_NTK_BUDGET", str(2**30))
    proc = run_cli("ntk", "--transform", "fc", "--method", "jacobian", *TINY, check=False)
    assert proc.returncode == 1
    assert "OverBudget" in proc.stderr and "largest N that fits" in proc.stderr


# ------------------------------------------------------------------------------ fuzz
class _WouldCompute(RuntimeError):
    """Raised where a fuzzed command would start computing (the fuzz tests the boundary)."""


def _fuzz_values(tmp_path) -> list[str]:
    """Values for any flag: good ones, bad ones, and names of server files that must never be
    opened or run (a FIFO blocks whoever opens it; a code-running pickle writes a canary)."""
    import pickle

    canary = tmp_path / "canary"

    class RunsCode:
        def __reduce__(self):
            return (exec, (f"open({str(canary)!r}, 'w').write('ran')",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": RunsCode()}))
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "out-link.pt").symlink_to(evil)
    (weights / "passwd.pt").symlink_to("/etc/passwd")
    (weights / "fifo-link.pt").symlink_to(fifo)
    return [
        *("0", "1", "2", "3", "-1", "8", "12", "999999999", "1e9", "0.1", "-0.5"),
        *("nan", "inf", "-inf", "", " ", "x", "true", "none", "-", "--", "--depth"),
        *("vp", "fc", "none", "digits", "animal", "shapes", "mnist", "imagenet", "cnn"),
        *("clip-cnn", "tiny-vit", "tiny-rn", "ViT-B-32", "hf-hub:evil/x", "random", "openai"),
        *("info", "ls", "default", "lambda_min", "1,2", "vp,fc", "0,1", "1-3", "cpu", "cuda"),
        *(str(evil), str(fifo), "out-link.pt", "passwd.pt", "fifo-link.pt", "evil.pt"),
        *("../../etc/passwd", "/proc/self/environ", "~/x.pt", "a/b.pt", "/dev/zero"),
        *("x` **MDINJ** `y", "\u00e9\u6f22\U0001f600", "a\nb", "a" * 3000, "%s%n", "$(id)"),
    ]


def test_cli_fuzz_100_calls_one_line_no_traceback_nothing_opened(run_cli, tmp_path, monkeypatch):
    """100 random command lines (commands, flags of each, values good and hostile): each ends
    with exit 0, 1 or 2 and never a traceback; no server file named in a value is opened (the
    FIFO has no reader) or run (the canary pickle's file never appears). Where a command would
    start computing, a stub says so instead: the boundary, not the computations, is fuzzed."""
    import random

    from reprog_core.backend import service
    from reprog_core.cli import build_parser
    from reprog_core.sweep import cli as sweep_cli
    from tests.integration.test_integrity import within
    from tests.unit.test_security import _no_reader

    def would_compute(*args, **kwargs):
        raise _WouldCompute("would compute")

    monkeypatch.setattr(service.Backend, "submit", would_compute)
    monkeypatch.setattr(sweep_cli, "run_sweep", would_compute)
    monkeypatch.chdir(tmp_path)  # sweep's default --out is relative
    values = _fuzz_values(tmp_path)
    monkeypatch.setenv("REPROG_WEIGHTS_DIR", str(tmp_path / "weights"))
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse's own
    flags = {
        name: [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
        for name, sub in commands.items()
    }
    for name in flags:
        flags[name] = [f for f in flags[name] if f not in ("--help", "--download")]
    rng = random.Random(17)
    outcomes: list[int] = []

    def fuzz() -> None:
        for _ in range(100):
            command = rng.choice(sorted(commands))
            argv = [command]
            if command == "cache":
                argv.append(rng.choice(["info", "ls", "clear", "warm", rng.choice(values)]))
            for _ in range(rng.randint(0, 6)):
                argv.append(rng.choice(flags[command] + ["--no-such-flag"]))
                if rng.random() < 0.85:
                    argv.append(rng.choice(values))
            if rng.random() < 0.3:  # often enough, a clip-cnn config whose weights get checked
                argv += ["--source-family", "clip-cnn", "--backbone", "tiny-vit"]
                argv += ["--weights", rng.choice(values)]
            proc = run_cli(*argv, check=False)
            assert proc.returncode in (0, 1, 2), (argv, proc.returncode, proc.stderr)
            assert "Traceback" not in proc.stderr, (argv, proc.stderr)
            if proc.returncode == 2:
                assert proc.stderr.count("\n") == 1, (argv, proc.stderr)
            outcomes.append(proc.returncode)

    within(fuzz, 120)  # fails, instead of hanging, if a call opens the FIFO
    assert len(outcomes) == 100 and {0, 1, 2} <= set(outcomes)
    assert _no_reader(tmp_path / "fifo.pt")
    assert not (tmp_path / "canary").exists(), "a fuzzed command ran the canary pickle"
