"""Small autodiff helpers shared by the kernel paths (private).

``functorch_friendly()`` exists because open_clip's attention runs through kernels torch.func
cannot transform on a CPU: ``nn.MultiheadAttention``'s inference fast path
(``_native_multi_head_attention``) and the fused SDPA kernels have no forward-mode rule, no
double-backward rule and no vmap batching rule (vmap falls back to a slow per-sample loop, with a
warning). The math SDPA backend is built from plain matmuls and softmax, which every transform
supports; the fast path is switched off for the same reason. Both are restored on exit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


@contextlib.contextmanager
def functorch_friendly() -> Iterator[None]:
    """Attention kernels that vmap, jacrev, jvp and double backward all handle (see module doc)."""
    mha = torch.backends.mha
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        mha.set_fastpath_enabled(previous)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode (no dropout, frozen BatchNorm statistics), then restore each
    submodule's own mode. The kernel is a property of the deterministic network; batch-coupled
    layers in train mode would also break the per-sample independence the structured path uses."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def model_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of ``module``'s first floating parameter (CPU float32 if none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def cast_module(module: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """``module`` itself when it already computes in ``dtype``, else a deep copy cast to it.

    A copy, because the caller's model (a fitted transform, a trained source) must not change.
    """
    _, current = model_device_dtype(module)
    if dtype is None or dtype == current:
        return module
    return copy.deepcopy(module).to(dtype)


def model_bytes(module: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of ``module``'s parameters and buffers; floating ones counted in ``dtype`` when given
    (what ``cast_module(module, dtype)`` allocates)."""
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        item = itemsize(dtype) if dtype is not None and t.is_floating_point() else t.element_size()
        total += t.numel() * item
    return total


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
