"""How the defaults were chosen (docs/results.md, "Why these defaults"): one measurement per call.

    python bench/choose_defaults.py src  source_per_class=300 seed=1      # a source model
    python bench/choose_defaults.py fit  transform=vp source_size=64      # fit + 'none' baseline
    python bench/choose_defaults.py kreg transform=fc rho=0.1,0.25,0.5    # kernel regime

Each call prints one JSON line. ``--list`` prints the grid that was measured (one call a line:
run them in parallel, e.g. ``python bench/choose_defaults.py --list | xargs -P 14 -L 1 python
bench/choose_defaults.py``; phase 1, the sources, before phase 2). Keys are ExperimentConfig
fields, plus ``patience`` (early-stopping patience), ``device`` and, for ``kreg``, ``rho`` (a
comma list) and ``steps_k``. It uses the library directly, not the backend, and the
REPROG_CACHE_DIR store for source models.
"""

import json
import sys
import time

import torch

from reprog_core import ntk
from reprog_core.config import ExperimentConfig
from reprog_core.fit import (
    baseline_accuracy,
    init_mapping,
    reprogram,
    squared_loss,
    target_data,
)
from reprog_core.reprogrammed import build_reprogrammed
from reprog_core.runtime import seed_everything
from reprog_core.source_model import n_source_classes
from reprog_core.source_model import training as T

torch.set_num_threads(1)  # one process per core: the grid runs many in parallel
DEV = "cpu"


def cfg_from(kv):
    global DEV
    kv = dict(kv)
    T.PATIENCE = int(kv.pop("patience", 3))
    DEV = kv.pop("device", "cpu")
    return ExperimentConfig.from_dict(kv), kv


def job_src(kv):
    cfg, _ = cfg_from(kv)
    m, r = T.load_or_train_source(cfg, device=DEV)
    return {
        "src_acc": r.source_test_acc,
        "train_acc": r.source_train_acc,
        "epochs": r.epochs_run,
        "secs": r.seconds,
        "val": [round(h["val_acc"], 3) for h in r.history],
    }


def job_fit(kv):
    cfg, _ = cfg_from(kv)
    src, rec = T.load_or_train_source(cfg, device=DEV)
    td = target_data(cfg)
    ns = n_source_classes(cfg)
    t, cpu = time.time(), time.process_time()
    _, fit = reprogram(cfg, src, td, n_source=ns)
    tf, cpu_fit = time.time() - t, time.process_time() - cpu
    base = baseline_accuracy(cfg, src, td, ns)
    return {
        "gain": fit.target_test_acc - base,
        "fit_cpu_secs": cpu_fit,
        "curve": [round(a, 3) for a in fit.curves.test_acc],
        "src_acc": rec.source_test_acc,
        "target_acc": fit.target_test_acc,
        "baseline": base,
        "initial": fit.initial_test_acc,
        "fit_secs": tf,
        "stopped": fit.stopped,
        "train_loss_end": fit.curves.train_loss[-1] if fit.curves.train_loss else None,
    }


def job_kreg(kv):
    kv = dict(kv)
    rhos = [float(r) for r in kv.pop("rho").split(",")]
    steps = int(kv.pop("steps_k", 200))
    cfg, _ = cfg_from(kv)
    src, rec = T.load_or_train_source(cfg, device=DEV)
    td = target_data(cfg)
    ns = n_source_classes(cfg)
    out = []
    for rho in rhos:
        seed_everything(cfg.seed)
        model = build_reprogrammed(cfg, src, len(td.classes), ns)
        x, y = td.x_kernel, td.y_kernel
        init_mapping(cfg, model, x, y)
        K0, _ = ntk.target_ntk(model, x, kernel="full", dtype=torch.float64)
        Kt, _ = ntk.target_ntk(model, x, kernel="trace", dtype=torch.float64)
        w, v = torch.linalg.eigh(K0)
        lmax, N = float(w[-1]), len(x)
        c = 10
        lr = rho * N / lmax
        r0 = ntk.initial_residuals(model, x, y)
        pred = ntk.ntk_dynamics((w, v), r0, lr=lr, steps=steps, every=1)["loss"]
        wt, vt = torch.linalg.eigh(Kt)
        pred_tr = ntk.ntk_dynamics((wt, vt), r0, lr=lr, steps=steps, every=1)["loss"]
        opt = torch.optim.SGD(list(model.transform.parameters()), lr=lr)
        meas, drifts = [], {}
        for t in range(steps + 1):
            loss = squared_loss(model(x), y)
            meas.append(float(loss))
            if t in (10, 25, 50, 100):
                K1, _ = ntk.target_ntk(model, x, kernel="full", dtype=torch.float64)
                drifts[t] = float((K1 - K0).norm() / K0.norm())
            if t == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        K1, _ = ntk.target_ntk(model, x, kernel="full", dtype=torch.float64)
        drifts[steps] = float((K1 - K0).norm() / K0.norm())
        rel = [abs(p - m) / m for p, m in zip(pred, meas)]
        hor = next((t for t, e in enumerate(rel) if e > 0.10), steps + 1) - 1
        out.append(
            {
                "rho": rho,
                "lmax_full": lmax,
                "lmax_trace_over_c": float(wt[-1]) / c,
                "lr": lr,
                "L0": meas[0],
                "Lend": meas[-1],
                "pred_end": pred[-1],
                "horizon": hor,
                "drop_at_h": 1 - meas[max(hor, 0)] / meas[0],
                "rel": {
                    t: round(rel[t], 4) for t in (1, 2, 5, 10, 25, 50, 100, steps) if t <= steps
                },
                "rel_trace": {
                    t: round(abs(pred_tr[t] - meas[t]) / meas[t], 4)
                    for t in (5, 25, 100, steps)
                    if t <= steps
                },
                "meas": [round(m, 5) for m in meas[:: max(1, steps // 40)]],
                "pred": [round(p, 5) for p in pred[:: max(1, steps // 40)]],
                "drift": drifts,
                "trace_vs_full": float(
                    (K0 - torch.kron(Kt / c, torch.eye(c, dtype=K0.dtype))).norm() / K0.norm()
                ),
            }
        )
    return {"src_acc": rec.source_test_acc, "runs": out}


BASE = "source_data=animal depth=3 source_epochs=40"


def _grid() -> dict[str, list[str]]:
    """The measured grid, one call a line (phase 1 before phase 2: the fits reuse the sources)."""
    src = [f"src {BASE} source_per_class={k} seed={s}" for k in (300, 600, 900) for s in (0, 1, 2)]
    src += [
        f"src {BASE} width=16 source_per_class=900 seed=0",
        "src source_data=animal depth=1 source_epochs=40 source_per_class=600 seed=0",
        "src source_data=animal depth=6 source_epochs=40 source_per_class=600 seed=0",
        "src source_data=shapes depth=3 source_epochs=40 source_per_class=200 seed=0",
    ]
    fits = [
        f"fit {BASE} source_per_class={k} seed={s} transform={t}"
        for k in (300, 600, 900)
        for t in ("fc", "vp")
        for s in ((0, 1, 2) if t == "fc" else (0,))
    ]
    fits += [
        f"fit {BASE} source_per_class=600 seed=0 transform={t} optimizer=sgd loss=mse"
        for t in ("fc", "vp")
    ]
    fits += [
        f"kreg {BASE} source_per_class=600 seed=0 transform={t} rho=0.1,0.25,0.5"
        for t in ("vp", "fc")
    ]
    gpu = [
        f"fit {BASE} source_per_class=300 seed={s} transform=vp source_size={size} device=cuda"
        for size, seeds in ((64, (0, 1, 2)), (96, (0, 1)), (32, (0,)))
        for s in seeds
    ]
    gpu.append(f"fit {BASE} source_per_class=300 seed=0 transform=fc source_size=64 device=cuda")
    # The pretrained default (issue 18): EfficientNet-Lite0 (ImageNet or random weights) -> mnist.
    pre = "source_family=efficientnet-lite0 target=mnist"
    pretrained = [
        f"fit {pre} weights={w} seed=0 transform=vp source_size={s} target_size=28"
        for s in (48, 64, 96)
        for w in ("imagenet", "random")
    ]
    pretrained += [
        f"fit {pre} weights={w} seed=0 transform=vp source_size=64 lr={lr}"
        for lr in (0.02, 0.1)
        for w in ("imagenet", "random")
    ]
    pretrained += [
        f"fit {pre} weights={w} seed=0 transform=vp source_size=64 steps=600"
        for w in ("imagenet", "random")
    ]
    pretrained += [
        f"fit {pre} weights={w} seed={s} transform=vp source_size=64"
        for s in (1, 2)
        for w in ("imagenet", "random")
    ]
    return {
        "sources": src,
        "fits and kernel regime": fits,
        "vp at larger sizes (GPU)": gpu,
        "pretrained": pretrained,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--list"]:
        # ``--list`` (all) or ``--list pretrained`` (one phase)
        for phase, lines in _grid().items():
            if sys.argv[2:] in ([], [phase]):
                print("\n".join(lines))
        raise SystemExit(0)
    kind, *rest = sys.argv[1:]
    kv = dict(a.split("=", 1) for a in rest)
    t = time.time()
    try:
        res = {
            "job": kind,
            "args": kv,
            **{"src": job_src, "fit": job_fit, "kreg": job_kreg}[kind](kv),
        }
    except Exception as e:  # noqa
        res = {"job": kind, "args": kv, "error": repr(e)[:500]}
    res["wall"] = round(time.time() - t, 1)
    print(json.dumps(res), flush=True)
