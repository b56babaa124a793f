"""``python -m reprog_core``: data sets, source training, fits, kernels, the cache and sweeps.

Every computing command goes through the cached backend, so a repeated command is instant and
``--json`` says how its result was obtained (``"cache": "computed" | "joined" | "hit"``).
Bad flags and bad values get a one-line error and exit code 2.

The commands import what they use inside their functions, on purpose: a cached answer is looked
up without torch (``_stored``), which the data sets, the models and the pipeline would import
(several seconds), so nothing heavy may load at module level here.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any

from reprog_core.config import ConfigError, ExperimentConfig
from reprog_core.config_args import add_config_flags as _add_config_flags
from reprog_core.config_args import config_from_args
from reprog_core.results import FitResult, KernelResult, SourceResult

EXIT_USAGE = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m reprog_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("datasets", help="list the registered data sets")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train-source", help="train (or load) the source model")
    _add_config_flags(p)

    p = sub.add_parser("fit", help="reprogram: fit the input transformation on the target task")
    _add_config_flags(p)

    p = sub.add_parser("ntk", help="target NTK (w.r.t. the transformation) or source NTK")
    _add_config_flags(p)
    p.add_argument("--wrt", choices=["transform", "source"], default="transform")
    p.add_argument("--method", choices=["auto", "structured", "jacobian"], default="auto")

    p = sub.add_parser("cache", help="inspect, clear or warm the result cache")
    p.add_argument("action", choices=["info", "ls", "clear", "warm"])
    p.add_argument("--kind", default=None, help="clear only this task kind")
    p.add_argument(
        "--preset",
        default=None,
        help="warm: a sweep preset grid to precompute (default: what the dashboard warms, the "
        "default views and the what-ifs one click away)",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("sweep", help="run a grid of experiments and write a report")
    _add_config_flags(p)
    p.add_argument("--preset", default=None, help="e.g. paper-depth")
    p.add_argument("--depths", default=None, help="comma list, e.g. 1,2,3")
    p.add_argument("--transforms", default=None, help="comma list, e.g. vp,fc")
    p.add_argument("--seeds", default=None, help="comma list, e.g. 0,1")
    p.add_argument("--out", default="sweeps/latest", help="output folder")
    p.add_argument(
        "--stat",
        default="lambda_min",
        choices=[
            "lambda_min",
            "lambda_max",
            "effective_rank",
            "condition_number",
            "alignment",
            "trace",
            "abs_sum_over_n",
            "decay_exponent",
            "rank",
        ],
        help="the spectral statistic the report plots against target accuracy",
    )
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start local)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A failed task is reported here in one line; its traceback only with REPROG_VERBOSE=1.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    if not os.environ.get("REPROG_VERBOSE"):
        logging.getLogger("reprog_core.backend").setLevel(logging.CRITICAL)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"python -m reprog_core: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI reports failures in one line, no traceback
        from reprog_core.backend import BackendError, StoreBusy
        from reprog_core.data import DatasetError
        from reprog_core.files import DiskFull  # the backend's and a computation's own

        known = (BackendError, DatasetError, FloatingPointError, ValueError, RuntimeError, OSError)
        if not isinstance(exc, known):
            raise
        what = "" if isinstance(exc, (DiskFull, StoreBusy)) else f"{type(exc).__name__}: "
        sys.stderr.write(f"python -m reprog_core {args.command}: {what}{exc}\n")
        return EXIT_FAILED


# ---------------------------------------------------------------------------------------- commands
def _cmd_datasets(args: argparse.Namespace) -> int:
    from reprog_core import data

    rows = []
    for name in data.list_datasets():
        s = data.dataset_spec(name)
        rows.append(
            {
                "name": name,
                "classes": s.n_classes,
                "size": list(s.image_size),
                "channels": s.channels,
                "offline": s.offline,
                "description": s.description,
            }
        )
    if args.json:
        _print_json({"datasets": rows})
    else:
        for r in rows:
            where = "offline" if r["offline"] else "data root"
            print(
                f"{r['name']:<14} {r['classes']:>4} classes  {r['size'][0]}x{r['size'][1]}  "
                f"{where:<9}  {r['description']}"
            )
    return 0


def ensure_downloaded(cfg: ExperimentConfig) -> None:
    """``--download``: fetch the downloadable data sets of ``cfg`` into its data root, here in the
    requesting process, before any computation is queued."""
    from reprog_core import data

    for name in dict.fromkeys((cfg.source_data, cfg.target)):
        if not data.dataset_spec(name).offline:
            data.load_dataset(name, cfg.data_root or None, download=True, seed=cfg.seed)


def _stored(kind: str, params: dict[str, Any], args) -> tuple[ExperimentConfig, dict] | None:
    """The stored result of the flags' request, looked up without importing torch (a cached
    answer then takes a fraction of a second instead of the seconds torch takes to load), with
    the same key and fields as the backend's hit; None when there is none (or when the request
    needs checks that load more: ``--download``, an open_clip tag or checkpoint). The
    request then goes through ``_run``, which validates everything."""
    if getattr(args, "download", False):
        return None
    fields = ExperimentConfig.__dataclass_fields__
    try:
        cfg = ExperimentConfig.for_lookup({k: v for k, v in vars(args).items() if k in fields})
    except ConfigError:
        return None
    if cfg.needs_weights_check:  # a tag or a checkpoint: checked by loading more
        return None
    if args.device:
        params = {**params, "device": args.device}
    from reprog_core.backend.service import Backend

    backend = Backend.from_env(device="cpu")  # a CPU-only backend never imports torch
    try:
        result = backend.get(kind, cfg, params)
    finally:
        backend.close()
    return None if result is None else (cfg, result)


def _request(kind: str, params: dict[str, Any], args) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, result) of a computing command: a stored result at once, else ``_run``."""
    hit = _stored(kind, params, args)
    if hit is not None:
        return hit
    cfg = config_from_args(args)
    return cfg, _run(kind, cfg, params, args)


def _run(kind: str, cfg: ExperimentConfig, params: dict[str, Any], args) -> dict[str, Any]:
    from reprog_core.serving import default_backend

    if getattr(args, "download", False):
        ensure_downloaded(cfg)

    from reprog_core.source_model.training import budget_warnings

    for warning in budget_warnings(cfg):  # said before anything trains (docs/science.md)
        sys.stderr.write(f"python -m reprog_core {args.command}: warning: {warning}\n")
    backend = default_backend()
    if args.device:
        params = {**params, "device": args.device}
    quiet = args.json or not sys.stderr.isatty()

    def show(status) -> None:
        if not quiet:
            sys.stderr.write(f"\r{status.stage[:70]:<70} {100 * status.progress:5.1f}%")

    stored = backend.run(kind, cfg, params, progress_cb=show)
    if not quiet:
        sys.stderr.write("\n")
    for warning in stored.get("warnings", []):  # e.g. disk full: computed, but not stored
        sys.stderr.write(f"python -m reprog_core {args.command}: warning: {warning}\n")
    return stored


def _cmd_train_source(args: argparse.Namespace) -> int:
    cfg, res = _request("source", {}, args)
    if args.json:
        _print_json(res)
    else:
        src = SourceResult.from_dict(res)
        print(
            f"source {cfg.source_family} depth {cfg.depth} on {cfg.source_data} "
            f"(weights: {src.weights}): train acc {_nan(src.source_train_acc):.3f}, "
            f"test acc {_nan(src.source_test_acc):.3f}, {src.epochs_run} epochs, "
            f"{src.seconds:.1f} s [{res['cache']}]"
        )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    cfg, res = _request("fit", {}, args)
    fit = FitResult.from_dict(res)
    if fit.stopped:
        sys.stderr.write(f"warning: {fit.stopped}\n")
    if args.json:
        _print_json(res)
    else:
        print(
            f"{cfg.source_data} -> {cfg.target} with {cfg.transform} "
            f"({fit.n_params_transform} parameters, weights: {fit.weights}): "
            f"source test acc {_nan(fit.source_test_acc):.3f}; target test acc "
            f"{_nan(fit.initial_test_acc):.3f} -> {_nan(fit.target_test_acc):.3f} "
            f"(baseline 'none': {_nan(fit.baseline_test_acc):.3f}); {fit.seconds:.1f} s "
            f"[{res['cache']}]"
        )
    return 0


def _cmd_ntk(args: argparse.Namespace) -> int:
    _, res = _request("ntk", {"wrt": args.wrt, "method": args.method}, args)
    kernel = KernelResult.from_dict(res)
    stats = kernel.stats
    if args.json:
        flat = {
            "config": kernel.config.to_dict(),
            "weights": kernel.weights,
            "method": kernel.method,
            "kernel": kernel.kernel,
            "n": kernel.n,
            "wrt": args.wrt,
            **stats.to_dict(),  # the eigenvalues first, then the statistics
            "seconds": kernel.seconds,
            "cache": res["cache"],
            "key": res["key"],
        }
        rest = kernel.to_dict()
        flat.update({k: v for k, v in rest.items() if k not in flat and k != "stats"})
        _print_json(flat)
    else:
        print(
            f"{args.wrt} NTK ({kernel.kernel}, N={kernel.n}, method {kernel.method},"
            f" weights: {kernel.weights}): lambda_max {_nan(stats.lambda_max):.4g},"
            f" lambda_min {_nan(stats.lambda_min):.4g}, rank {stats.rank}"
            f" (tol {_nan(stats.rank_tol):.2g}), effective rank "
            f"{_nan(stats.effective_rank):.2f}, {kernel.seconds:.2f} s "
            f"[{res['cache']}]"
        )
    return 0


def _nan(value: float | None) -> float:
    """A stored number for a format spec: None (NaN in strict JSON) as NaN."""
    return math.nan if value is None else value


def _cmd_cache(args: argparse.Namespace) -> int:
    from reprog_core import backend as be
    from reprog_core import sweep
    from reprog_core.serving import default_backend

    b = default_backend()
    if args.action == "info":
        out: Any = be.cache_info(b)
    elif args.action == "ls":
        out = be.cache_ls(b)
    elif args.action == "clear":
        out = be.admin.cache_clear_report(b, kind=args.kind)
    else:

        def show(done: int, total: int, entry: dict[str, Any]) -> None:
            if not args.json:
                what = entry.get("view") or ", ".join(
                    f"{k} {entry[k]}" for k in ("depth", "transform", "seed") if k in entry
                )
                how = entry.get("error") or entry.get("cache")
                print(
                    f"[{done}/{total}] {what}: {how} ({entry['elapsed_s']:.0f} s)", file=sys.stderr
                )

        if args.preset:
            grid = sweep.build_grid(ExperimentConfig(), preset=args.preset)
            items = sweep.warm_items(grid)
        else:
            from reprog_core import presets

            views = presets.default_views() + presets.what_ifs()
            items = [("explore", cfg, {}, {"view": label}) for label, cfg in views]
        out = be.warm(b, items, show)
    if args.json:
        _print_json(out if isinstance(out, dict) else {"entries": out})
    elif isinstance(out, list):
        for row in out:
            print(json.dumps(row, default=str))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from reprog_core import sweep

    if args.download:
        ensure_downloaded(config_from_args(args))
    return sweep.main_from_args(args)


_COMMANDS = {
    "datasets": _cmd_datasets,
    "train-source": _cmd_train_source,
    "fit": _cmd_fit,
    "ntk": _cmd_ntk,
    "cache": _cmd_cache,
    "sweep": _cmd_sweep,
}


def _print_json(obj: Any) -> None:
    """One strict-JSON object on stdout (NaN/inf become null)."""
    from reprog_core.results import json_safe

    print(json.dumps(json_safe(obj), default=str, allow_nan=False))
