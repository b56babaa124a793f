"""The memory budget of a kernel computation: estimate first, refuse before allocating.

Every dense kernel computation in this package is planned before it runs: the bytes it will hold
(the per-sample Jacobian or input gradients, the Gram matrix, one working chunk) are estimated from
shapes alone, and a plan over the budget raises ``KernelTooLarge`` before a single large tensor
is allocated. The message says how many bytes the request needs and the largest N that fits.

The budget is ``budget_bytes`` when given, else ``$REPROG_NTK_BUDGET`` (bytes, or with a K/M/G
suffix: ``8G``), else ``DEFAULT_BUDGET_BYTES`` (4 GiB: the issue's target for fc at N = 512 on
the 24 GiB, 2-core development machines, with room for the rest of a worker).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

BUDGET_ENV = "REPROG_NTK_BUDGET"
DEFAULT_BUDGET_BYTES = 4 * 2**30
# A working chunk (one vmap/jacrev or backward batch) may use at most this share of the budget,
# so that the held arrays and the chunk together stay within it.
CHUNK_SHARE = 0.25
MAX_CHUNK = 64  # samples per chunk: beyond this, larger batches stop paying off on a CPU


class KernelTooLarge(Exception):
    """A kernel request over the memory budget, refused before anything was allocated.

    ``over_budget`` is always True (the backend uses it to tell this from other failures);
    ``needed_bytes``, ``budget_bytes`` and ``max_n`` (the largest N that fits; 0 if none) say by
    how much.
    """

    over_budget = True

    def __init__(self, message: str, *, needed_bytes: int, budget_bytes: int, max_n: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
        self.max_n = max_n


def resolve_budget(budget_bytes: int | None = None) -> int:
    """The budget in bytes: the argument, else ``$REPROG_NTK_BUDGET``, else 4 GiB."""
    if budget_bytes is not None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        return int(budget_bytes)
    env = os.environ.get(BUDGET_ENV, "").strip()
    if not env:
        return DEFAULT_BUDGET_BYTES
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if env[-1].upper() in units:
            return int(float(env[:-1]) * units[env[-1].upper()])
        return int(float(env))
    except ValueError:
        raise ValueError(
            f"${BUDGET_ENV}={env!r} is not a size: give bytes or a number with K/M/G/T"
        ) from None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable; keeps type checkers content


@dataclass(frozen=True)
class MemoryPlan:
    """What a dense kernel computation will hold, from shapes alone.

    Held bytes = ``per_sample`` * N (Jacobian rows or input-gradient rows, all N samples)
    + ``per_pair`` * N^2 (the Gram matrix and N x N side matrices) + ``fixed`` (one working chunk).
    """

    what: str  # e.g. "target NTK (jacobian, trace)"
    n: int
    per_sample: int
    per_pair: int
    fixed: int
    parts: dict[str, int] = field(default_factory=dict)  # readable breakdown for the message

    def bytes_for(self, n: int) -> int:
        return self.per_sample * n + self.per_pair * n * n + self.fixed

    @property
    def needed_bytes(self) -> int:
        return self.bytes_for(self.n)

    def largest_n(self, budget: int) -> int:
        """The largest N with ``bytes_for(N) <= budget`` (0 when not even N = 1 fits)."""
        room = budget - self.fixed
        if room < self.per_sample + self.per_pair:
            return 0
        if self.per_pair == 0:
            return int(room // self.per_sample)
        a, b = self.per_pair, self.per_sample
        n = int((-b + math.sqrt(b * b + 4 * a * room)) / (2 * a))
        # Floating-point guard: step to the exact integer boundary.
        while n > 0 and self.bytes_for(n) > budget:
            n -= 1
        while self.bytes_for(n + 1) <= budget:
            n += 1
        return n

    def check(self, budget: int, hint: str = "") -> None:
        """Raise ``KernelTooLarge`` when the plan does not fit ``budget``."""
        need = self.needed_bytes
        if need <= budget:
            return
        max_n = self.largest_n(budget)
        parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in self.parts.items())
        raise KernelTooLarge(
            f"{self.what} for N={self.n} needs about {human_bytes(need)} ({need} bytes: {parts}), "
            f"over the memory budget of {human_bytes(budget)}; the largest N that fits is "
            f"{max_n}. {hint}Lower N, or raise the budget (budget_bytes=..., ${BUDGET_ENV}).",
            needed_bytes=need,
            budget_bytes=budget,
            max_n=max_n,
        )


def eigendecomposition_bytes(rows: int, itemsize: int = 8) -> int:
    """What a symmetric eigendecomposition of a ``rows`` x ``rows`` matrix holds besides the
    matrix itself: the eigenvectors (rows^2) and LAPACK ``syevd``'s workspace (1 + 6 rows +
    2 rows^2 items), i.e. about three more matrices.

    A kernel plan that leaves this out is about half the measured peak once the Gram dominates:
    ``--kernel full --n 512`` planned 468 MiB (Gram x2, rows, one chunk) and peaked near twice that
    (issue 9). ``reprog_core.memory.kernel`` counts it; plans built from shapes should add it to
    ``per_pair`` (3 matrices' worth) when they decompose the Gram.
    """
    return (rows * rows + 1 + 6 * rows + 2 * rows * rows) * itemsize


def chunk_size_for(per_sample_work: int, budget: int, n: int, requested: int | None) -> int:
    """Samples per working chunk: ``requested``, else as many as fit ``CHUNK_SHARE`` of the
    budget (at least 1, at most ``MAX_CHUNK`` and N)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"chunk_size must be >= 1, got {requested}")
        return min(requested, max(n, 1))
    fit = int(CHUNK_SHARE * budget // max(per_sample_work, 1))
    return max(1, min(fit, MAX_CHUNK, max(n, 1)))
