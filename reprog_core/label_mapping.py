"""Output (label) mappings b: source logits (N, c_S) -> target logits (N, c_T).

The paper assumes b is a fixed linear map. ``identity`` (first c_T source outputs), ``flm`` and
``ilm`` are fixed index selections (ILM re-selects during training); ``learned`` is a trainable
linear layer, which goes beyond the paper's assumption and is labelled so wherever it is used.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from reprog_core.config import MappingKind


class IndexMapping(nn.Module):
    """Target class k reads source output ``indices[k]``. logits (N, c_S) -> (N, c_T)."""

    learned = False

    def __init__(self, kind: str, indices: torch.Tensor, n_source: int) -> None:
        super().__init__()
        self.kind = kind
        self.n_source = n_source
        self.register_buffer("indices", indices.long().clone())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.index_select(1, self.indices)

    def set_indices(self, indices: torch.Tensor) -> None:
        self.indices.copy_(indices.long())

    def as_list(self) -> list[int]:
        return [int(i) for i in self.indices.tolist()]


class LinearMapping(nn.Module):
    """``learned``: a trainable linear map from c_S source logits to c_T target logits."""

    learned = True
    kind = MappingKind.LEARNED.value

    def __init__(self, n_source: int, n_target: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_source, n_target)
        # Start from the identity/first-k selection where possible, so step 0 matches 'identity'.
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            k = min(n_source, n_target)
            self.linear.weight[:k, :k] = torch.eye(k)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.linear(logits)

    def as_list(self) -> None:
        return None


def frequency_assignment(
    pred_source: torch.Tensor, y_target: torch.Tensor, n_source: int, n_target: int
) -> torch.Tensor:
    """FLM: a one-to-one map target class -> source class maximising how often the prompted
    source model predicts that source class for that target class.

    pred_source (N,) source argmax predictions; y_target (N,) target labels. Returns (c_T,) indices.

    The assignment is solved exactly (Hungarian, ``linear_sum_assignment`` on the c_T x c_S count
    matrix). Chen et al.'s ILM-VP code uses a greedy rule instead (take the largest count, fix
    that pair, strike its row and column, repeat), which can match fewer images: on random
    10 x 10 count matrices the two maps differ in 60-80 % of cases, the exact one matching a
    median 0.3-0.9 % more of the images (docs/science.md, "The model"). Numbers compared with
    the paper's may differ by that much.
    """
    if n_target > n_source:
        raise ValueError(
            f"a one-to-one label mapping needs c_T ({n_target}) <= c_S ({n_source}); "
            "use mapping 'learned' instead"
        )
    counts = np.zeros((n_target, n_source))
    np.add.at(counts, (y_target.cpu().numpy(), pred_source.cpu().numpy()), 1)
    rows, cols = linear_sum_assignment(-counts)
    out = np.empty(n_target, dtype=np.int64)
    out[rows] = cols
    return torch.from_numpy(out)


def build_mapping(kind: str, n_source: int, n_target: int) -> nn.Module:
    """Factory. FLM/ILM start as identity; ``fit`` computes their assignment from data."""
    if kind == MappingKind.LEARNED.value:
        return LinearMapping(n_source, n_target)
    if kind not in (MappingKind.IDENTITY.value, MappingKind.FLM.value, MappingKind.ILM.value):
        raise ValueError(f"unknown label mapping {kind!r}")
    if n_target > n_source:
        raise ValueError(
            f"mapping {kind!r} selects one source output per target class, so it needs "
            f"c_T ({n_target}) <= c_S ({n_source}); use mapping 'learned' instead"
        )
    return IndexMapping(kind, torch.arange(n_target), n_source)


@torch.no_grad()
def fit_frequency_mapping(
    mapping: IndexMapping, source_logits: torch.Tensor, y_target: torch.Tensor
) -> list[int]:
    """Recompute an FLM/ILM assignment in place from source logits (N, c_S) and labels (N,)."""
    idx = frequency_assignment(
        source_logits.argmax(1), y_target, mapping.n_source, len(mapping.indices)
    )
    mapping.set_indices(idx.to(mapping.indices.device))
    return mapping.as_list()
