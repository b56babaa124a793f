"""Reprogramming fits: train only theta (and a learned mapping), the source model frozen.

f_T(x) = b(f_S(a_theta(x))) (``reprogrammed.py``). A fit returns per-step curves, accuracy before
and after, a few transformed examples and the learned prompt. It is repeatable for a seed on the
CPU and stops on a non-finite loss, keeping the last finite parameters and saying so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reprog_core import data
from reprog_core.config import (
    ExperimentConfig,
    LossKind,
    MappingKind,
    OptimizerKind,
    sgd_step_size,
)
from reprog_core.label_mapping import fit_frequency_mapping
from reprog_core.reprogrammed import ReprogrammedModel, build_reprogrammed
from reprog_core.results import FitCurves, FitResult
from reprog_core.runtime import rng_lock, seed_everything

ProgressFn = Callable[[float, str], None]
StepHook = Callable[[int, float, nn.Module], None]
TARGET_TEST_PER_CLASS = 100  # cap on target test images per class: keeps evaluation cheap
# The test-accuracy curve during a fit is measured on a fixed, class-balanced subset of the test
# split (the accuracies before and after the fit on all of it): with a pretrained source, 12
# evaluations on the whole split cost about as much as the fit itself.
CURVE_TEST_PER_CLASS = 20
N_EXAMPLES = 6


@dataclass
class TargetData:
    """Target images at their native size. x_* (N, 3, H, W) in [0, 1]; y_* (N,) int64.

    ``x_kernel``/``y_kernel`` are the N samples the target NTK is computed on: a seeded,
    class-balanced subset of the training images.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_kernel: torch.Tensor
    y_kernel: torch.Tensor
    classes: tuple[str, ...]


def target_data(cfg: ExperimentConfig) -> TargetData:
    ds = data.load_dataset(cfg.target, cfg.data_root or None, seed=cfg.seed)
    ds = ds.subsample(cfg.target_per_class, cfg.seed, "train")
    ds = ds.subsample(TARGET_TEST_PER_CLASS, cfg.seed, "test")
    per_class = math.ceil(cfg.n_kernel / ds.n_classes)
    idx = data.per_class_indices(ds.y_train, per_class, cfg.seed + 1)
    # Interleave classes so any prefix stays balanced, then take exactly n_kernel.
    g = torch.Generator().manual_seed(cfg.seed)
    idx = idx[torch.randperm(len(idx), generator=g)][: cfg.n_kernel]
    if len(idx) < cfg.n_kernel:
        raise ValueError(
            f"n_kernel={cfg.n_kernel} but the target training split has only {len(idx)} images "
            f"(target_per_class={cfg.target_per_class}); lower n_kernel"
        )
    return TargetData(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.x_train[idx], ds.y_train[idx], ds.classes
    )


def training_set(cfg: ExperimentConfig, td: TargetData) -> tuple[torch.Tensor, torch.Tensor]:
    """The images a fit trains on: the target training split, or for optimizer 'sgd' the kernel
    samples (full-batch gradient descent on them is the setting the NTK prediction models)."""
    if cfg.optimizer == OptimizerKind.SGD.value:
        return td.x_kernel, td.y_kernel
    return td.x_train, td.y_train


def init_mapping(
    cfg: ExperimentConfig, model: ReprogrammedModel, x: torch.Tensor, y: torch.Tensor
) -> None:
    """Fit an FLM/ILM assignment at theta_0 on the fit's training images (no-op otherwise)."""
    if cfg.mapping in (MappingKind.FLM.value, MappingKind.ILM.value):
        fit_frequency_mapping(model.mapping, _source_logits(model, x), y)


def initial_model(
    cfg: ExperimentConfig, source: nn.Module, td: TargetData, n_source: int
) -> ReprogrammedModel:
    """f_T at theta_0, seeded by ``cfg.seed``, with the label mapping the fit starts from (FLM/ILM
    fitted on its training images): built once per experiment, the kernel is taken at it and the
    fit trains a copy (``reprogram(start=...)``)."""
    with rng_lock():  # the global RNGs are shared by the backend's threads
        seed_everything(cfg.seed)
        model = build_reprogrammed(cfg, source, len(td.classes), n_source)
    device = next(source.parameters()).device
    x, y = training_set(cfg, td)
    init_mapping(cfg, model, x.to(device), y.to(device))
    return model


def squared_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0.5 * ||f(x) - onehot(y)||^2, averaged over the batch (the NTK theory's loss)."""
    return 0.5 * (logits - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).sum(1).mean()


def reprogram(
    cfg: ExperimentConfig,
    source: nn.Module,
    td: TargetData,
    *,
    n_source: int,
    progress: ProgressFn | None = None,
    lr: float | None = None,
    on_step: StepHook | None = None,
    start: ReprogrammedModel | None = None,
) -> tuple[ReprogrammedModel, FitResult]:
    """Fit a_theta (and a learned b) on the target task; the source model stays frozen.

    ``lr``: the step size; required for sgd without ``cfg.lr`` (it comes from the spectrum:
    ``config.sgd_step_size``), else ``cfg.effective_lr``. ``on_step(step, loss, model)`` is
    called before each update with the loss at the current parameters, L(theta_{step-1}).
    ``start``: the model at theta_0 (``initial_model``), which is left as it is: the fit trains
    a copy. Built here when not given.
    """
    if lr is None:
        lr = cfg.effective_lr  # raises for sgd without lr: the caller must pass the spectrum's
    t0 = time.perf_counter()
    device = next(source.parameters()).device
    model = (start or initial_model(cfg, source, td, n_source)).trainable_copy()
    gen = torch.Generator().manual_seed(cfg.seed)  # the minibatches: the same for any start
    x_train, y_train = (t.to(device) for t in training_set(cfg, td))
    x_test, y_test = td.x_test.to(device), td.y_test.to(device)
    curve_idx = data.per_class_indices(td.y_test, CURVE_TEST_PER_CLASS, cfg.seed).to(device)
    x_eval, y_eval = x_test[curve_idx], y_test[curve_idx]
    x_kern, y_kern = td.x_kernel.to(device), td.y_kernel.to(device)

    params = [p for p in model.transform.parameters()]
    if getattr(model.mapping, "learned", False):
        params += list(model.mapping.parameters())
    loss_fn = squared_loss if cfg.loss == LossKind.MSE.value else F.cross_entropy
    curves = FitCurves(test_subset=len(y_eval))
    initial_acc = _accuracy(model, x_test, y_test)
    whole = len(y_eval) == len(y_test)
    _record_eval(curves, 0, model, x_eval, y_eval, x_kern, y_kern, initial_acc if whole else None)
    stopped = ""
    steps = cfg.steps if params else 0
    if steps:
        opt = _optimizer(cfg, params, lr)
        batch = len(y_train) if cfg.optimizer == OptimizerKind.SGD.value else cfg.batch_size
        # The parameters that gave the last finite loss, kept in preallocated buffers.
        last_good = [p.detach().clone() for p in params]
        for step in range(1, steps + 1):
            idx = torch.randint(len(y_train), (min(batch, len(y_train)),), generator=gen)
            if batch >= len(y_train):
                idx = torch.arange(len(y_train))
            idx = idx.to(device)
            logits = model(x_train[idx])
            loss = loss_fn(logits, y_train[idx])
            if not torch.isfinite(loss):
                with torch.no_grad():
                    for p, good in zip(params, last_good):
                        p.copy_(good)
                stopped = (
                    f"loss became {loss.item()} at step {step}; stopped and kept the parameters "
                    f"of step {step - 1}. Lower the learning rate (now {lr:g})."
                )
                break
            with torch.no_grad():
                for good, p in zip(last_good, params):
                    good.copy_(p)
            if on_step is not None:
                on_step(step, float(loss.item()), model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curves.step.append(step)
            curves.train_loss.append(float(loss.item()))
            curves.train_acc.append(float((logits.argmax(1) == y_train[idx]).float().mean()))
            if cfg.mapping == MappingKind.ILM.value and step % cfg.eval_every == 0:
                fit_frequency_mapping(model.mapping, _source_logits(model, x_train), y_train)
            if step % cfg.eval_every == 0 or step == steps:
                _record_eval(curves, step, model, x_eval, y_eval, x_kern, y_kern)
            if progress:
                progress(step / steps, f"reprogramming fit: step {step}/{steps}")
    final_acc = _accuracy(model, x_test, y_test)
    last_step = curves.step[-1] if curves.step else 0
    if stopped and curves.eval_step[-1] != last_step:
        _record_eval(
            curves, last_step, model, x_eval, y_eval, x_kern, y_kern, final_acc if whole else None
        )
    # One test image of each class in turn (test splits are often sorted by class).
    shown = data.per_class_indices(td.y_test, 1, cfg.seed)[:N_EXAMPLES]
    before, after = _examples(model, td.x_test[shown].to(device), cfg.source_size)
    prompt = model.transform.prompt_image()
    result = FitResult(
        config=cfg,
        weights=cfg.weights_label,
        transform=cfg.transform,
        n_params_transform=model.transform.n_params,
        source_test_acc=float("nan"),  # filled in by the caller, who knows the source record
        target_test_acc=final_acc,
        initial_test_acc=initial_acc,
        baseline_test_acc=None,
        curves=curves,
        mapping=model.mapping.as_list(),
        examples_before=before,
        examples_after=after,
        prompt=_to_list(prompt) if prompt is not None else None,
        seconds=time.perf_counter() - t0,
        stopped=stopped,
        lr=float(lr),
    )
    return model, result


def baseline_step_size(
    cfg: ExperimentConfig, source: nn.Module, td: TargetData, n_source: int
) -> float:
    """The step size the ``none`` baseline trains a learned mapping at: the one the config's own
    fit gives its mapping. 0.0 when the mapping has nothing to train (identity, FLM, ILM).

    The fit trains a learned read-out b beside theta at one step size, so the baseline trains b
    alone at it: ``lr`` when set; else, for Adam, the transform's default (``transforms.SPECS``);
    for sgd the rule the fit uses, eta = rho N / lambda_max of the full kernel of what is trained,
    here b's own (``readout_lambda_max``) on the images it trains on. A config whose transform is
    ``none`` is its own baseline: its fit's step size (``lr``, else 0: nothing trained).
    """
    if cfg.mapping != MappingKind.LEARNED.value:
        return 0.0
    if cfg.transform == "none":
        return float(cfg.lr) if cfg.lr > 0 else 0.0
    if not cfg.lr_from_spectrum:
        return cfg.effective_lr
    base = cfg.replace(transform="none")
    model = build_reprogrammed(base, source, len(td.classes), n_source)
    x, _ = training_set(base, td)
    device = next(source.parameters()).device
    z = _source_logits(model, x.to(device)).double().cpu()
    return sgd_step_size(cfg.rho, len(x), readout_lambda_max(z))


def readout_lambda_max(z: torch.Tensor) -> float:
    """lambda_max of the full NTK of a linear read-out f = W z + b w.r.t. (W, b) on source logits
    z (N, c_S): K((i, a), (j, a')) = (<z_i, z_j> + 1) delta_{a a'}, so the N x N matrix
    Z Z^T + 1 1^T holds every eigenvalue (each c_T times)."""
    z = z.double()
    gram = z @ z.T + 1.0
    return float(torch.linalg.eigvalsh(gram)[-1])


def baseline_note(cfg: ExperimentConfig, lr: float, n_target: int, n_source: int) -> str:
    """What the ``none`` baseline of ``cfg`` trained or fitted, in a few words (the record's
    ``baseline_note``, the page's help on the baseline)."""
    images = (
        f"the N = {cfg.n_kernel} kernel samples"
        if cfg.optimizer == OptimizerKind.SGD.value
        else "the resized training images"
    )
    if cfg.mapping == MappingKind.IDENTITY.value:
        return (
            f"nothing trained or fitted: target class k reads source output k (identity, the "
            f"first {n_target} of {n_source})"
        )
    if cfg.mapping in (MappingKind.FLM.value, MappingKind.ILM.value):
        return (
            f"FLM fitted on {images} (each target class reads the source output it is most "
            "often predicted as), nothing trained"
            + (
                " (ILM is FLM here: with nothing trained it is computed once)"
                if cfg.mapping == MappingKind.ILM.value
                else ""
            )
        )
    if lr <= 0:
        return (
            f"nothing trained: the learned {n_target}×{n_source} read-out stays at its "
            "initialisation (identity on the first outputs), transform 'none' having step size 0; "
            "set lr to train it"
        )
    if cfg.optimizer == OptimizerKind.SGD.value:
        how = (
            "the fit's lr"
            if cfg.lr > 0
            else f"η = ρ·N/λ_max of the read-out's own kernel, ρ = {cfg.rho:g}"
        )
        opt = f"full-batch gradient descent on {images}"
    else:
        how = "the fit's lr" if cfg.lr > 0 else f"Adam's step size for {cfg.transform}"
        opt = f"Adam on minibatches of {cfg.batch_size} training images"
    return (
        f"the learned {n_target}×{n_source} read-out trained alone for {cfg.steps} steps at lr "
        f"{lr:.3g} ({how}; {opt}, {cfg.loss} loss), on the resized images"
    )


def baseline_accuracy(
    cfg: ExperimentConfig, source: nn.Module, td: TargetData, n_source: int
) -> float:
    """Target test accuracy of the same source with transform ``none`` and the same mapping kind:
    FLM/ILM are fitted on the resized images, identity is used as it is, and a learned mapping is
    trained alone, at the step size the config's fit gives it (``baseline_step_size``); what it
    trained is ``baseline_note``."""
    lr = baseline_step_size(cfg, source, td, n_source)
    _, res = reprogram(cfg.replace(transform="none"), source, td, n_source=n_source, lr=lr)
    return res.target_test_acc


def _optimizer(
    cfg: ExperimentConfig, params: list[torch.Tensor], lr: float
) -> torch.optim.Optimizer:
    if cfg.optimizer == OptimizerKind.SGD.value:
        return torch.optim.SGD(params, lr=lr)
    # The fused kernel updates all of a tensor's entries in one pass: ~1.5x per step for fc's
    # 7.2M-entry W (measured for issue 11); not bit-identical to the loop, hence CODE_VERSION 2.
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a dtype/device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def _source_logits(model: ReprogrammedModel, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [model.source(model.transform(x[i : i + batch])) for i in range(0, len(x), batch)]
    )


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((_predict(model, x).argmax(1) == y).float().mean())


def _record_eval(
    curves: FitCurves,
    step: int,
    model: nn.Module,
    x_test,
    y_test,
    x_kern,
    y_kern,
    test_acc: float | None = None,
) -> None:
    curves.eval_step.append(step)
    curves.test_acc.append(test_acc if test_acc is not None else _accuracy(model, x_test, y_test))
    with torch.no_grad():
        curves.kernel_loss.append(float(squared_loss(_predict(model, x_kern), y_kern)))


@torch.no_grad()
def _examples(model: ReprogrammedModel, x: torch.Tensor, s: int) -> tuple[list, list]:
    before = data.resize(x, s).clamp(0, 1)
    after = model.transform(x).clamp(0, 1)
    return [_to_list(b) for b in before], [_to_list(a) for a in after]


def _to_list(t: torch.Tensor) -> list:
    """A (3, H, W) image as nested lists rounded to 3 decimals (compact JSON)."""
    return (t.detach().float().cpu() * 1000).round().div(1000).tolist()
