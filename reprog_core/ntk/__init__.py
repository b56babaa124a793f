"""Neural tangent kernels of model reprogramming, and what their spectra say.

One idea per module:

| module         | what it owns |
|----------------|--------------|
| ``target``     | ``target_ntk``: Θ_T w.r.t. θ; method, memory plan, Jacobian reference path |
| ``structured`` | the structured fast path: input gradients G of the frozen part, Θ_T from them |
| ``precision``  | the precision check: float32 G with a float64 Gram, or the fallback |
| ``jacobian``   | the generic per-sample-Jacobian contraction (torch.func), chunked |
| ``source``     | ``source_ntk``: K_S w.r.t. the source model's trainable parameters |
| ``analytic``   | closed forms: ``transform_kernel`` (Θ^A), ``relu_mlp_ntk`` (infinite width) |
| ``spectral``   | ``spectrum``: eigenvalues, rank + tolerance, alignment (``SpectrumStats``) |
| ``dynamics``   | ``ntk_dynamics``: the linearised squared-loss training curve in fit steps |
| ``lanczos``    | ``topk_eigs``: top-k eigenpairs matrix-free, beyond the dense budget |
| ``budget``     | memory plans; ``KernelTooLarge`` raised before allocating |
| ``records``    | ``target_kernel_result`` / ``source_kernel_result``: ``KernelResult`` records |

Shape conventions: target images x (N, C, H, W); a trace kernel is (N, N) = sum over outputs; a
full kernel is (N*c, N*c) with row ``i*c + a`` (sample-major).
"""

from reprog_core.ntk.analytic import TransformKernel, relu_mlp_ntk, transform_kernel
from reprog_core.ntk.budget import (
    DEFAULT_BUDGET_BYTES,
    KernelTooLarge,
    MemoryPlan,
    resolve_budget,
)
from reprog_core.ntk.dynamics import initial_residuals, ntk_dynamics
from reprog_core.ntk.jacobian import jacobian_ntk
from reprog_core.ntk.lanczos import NtkOperator, topk_eigs
from reprog_core.ntk.records import source_kernel_result, target_kernel_result
from reprog_core.ntk.source import source_kernel, source_ntk
from reprog_core.ntk.spectral import (
    alignment,
    eigendecompose,
    spectrum,
    stats_from_eigenvalues,
)
from reprog_core.ntk.structured import TransformStructure, input_gradients, transform_structure
from reprog_core.ntk.target import NtkMethod, estimate_bytes, target_ntk

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "KernelTooLarge",
    "MemoryPlan",
    "NtkMethod",
    "NtkOperator",
    "TransformKernel",
    "TransformStructure",
    "alignment",
    "eigendecompose",
    "estimate_bytes",
    "initial_residuals",
    "input_gradients",
    "jacobian_ntk",
    "ntk_dynamics",
    "relu_mlp_ntk",
    "resolve_budget",
    "source_kernel",
    "source_kernel_result",
    "source_ntk",
    "spectrum",
    "stats_from_eigenvalues",
    "target_kernel_result",
    "target_ntk",
    "topk_eigs",
    "transform_kernel",
    "transform_structure",
]
