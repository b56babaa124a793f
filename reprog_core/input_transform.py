"""Input transformations a_theta: the only trainable part of a reprogrammed model.

Every transformation maps target images (N, C, H, W) of any size and channel count to source
inputs (N, 3, s, s). Target images are first resized to the target resolution t x t (and grey is
repeated to 3 channels). See the table in ``docs/science.md``.

The structured NTK (``reprog_core.ntk``) relies on each transformation's Jacobian structure,
exposed here without building it:
- ``prompt_scale()`` (3, s, s): d a(x) / d delta, element-wise (vp: m * sigmoid'(delta); vp-full: 1)
- ``fc_features(x)`` (N, d_in): the vector the fc layer multiplies, and ``fc_region`` the part of
  the source input the fc layer writes (all of it for fc, the inner t x t square for vp-fc).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprog_core import transforms
from reprog_core.config import TransformKind
from reprog_core.data.base import resize


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) with C in {1, 3, 4} -> (N, 3, H, W)."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 4:
        return x[:, :3]
    if x.shape[1] != 3:
        raise ValueError(f"target images need 1, 3 or 4 channels, got {x.shape[1]}")
    return x


def border_mask(source_size: int, target_size: int) -> torch.Tensor:
    """(3, s, s) float mask: 1 on the border, 0 on the centred t x t inner square."""
    m = torch.ones(3, source_size, source_size)
    lo = (source_size - target_size) // 2
    m[:, lo : lo + target_size, lo : lo + target_size] = 0.0
    return m


def _resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """The linear map of ``resize`` from 3 x in x in to 3 x out x out, as (3 out^2, 3 in^2)."""
    d_in = 3 * in_size * in_size
    basis = torch.eye(d_in).reshape(d_in, 3, in_size, in_size)
    # Bilinear without antialiasing is linear and matches what F.interpolate does on upsampling.
    out = F.interpolate(basis, size=(out_size, out_size), mode="bilinear", align_corners=False)
    return out.reshape(d_in, -1).T.contiguous()


class InputTransform(nn.Module):
    """Base class. ``forward``: (N, C, H, W) target images -> (N, 3, s, s) source input."""

    kind: str = ""

    def __init__(self, source_size: int, target_size: int) -> None:
        super().__init__()
        self.source_size = source_size
        self.target_size = target_size

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Target images -> (N, 3, t, t), the resolution every transform starts from."""
        return resize(_as_rgb(x), self.target_size)

    @property
    def n_params(self) -> int:
        """Trainable parameters that actually influence the output (vp: 3(s^2 - t^2))."""
        return sum(p.numel() for p in self.parameters())

    def prompt_scale(self) -> torch.Tensor | None:
        return None

    def prompt_image(self) -> torch.Tensor | None:
        """The learned prompt as an image (3, s, s) for display, or None."""
        return None


class NoTransform(InputTransform):
    """``none``: resize only. The source model as it is on the target task (baseline)."""

    kind = TransformKind.NONE.value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(_as_rgb(x), self.source_size)


class PaddingPrompt(InputTransform):
    """``vp``: resize to t x t, zero-pad to s x s, add ``sigmoid(delta) * M`` (M = 1 on the border).

    delta (3, s, s) starts at 0 (a grey frame); only its 3(s^2 - t^2) border entries matter.
    """

    kind = TransformKind.VP.value

    def __init__(self, source_size: int, target_size: int) -> None:
        super().__init__(source_size, target_size)
        if target_size >= source_size:
            raise ValueError("vp needs target_size < source_size")
        self.delta = nn.Parameter(torch.zeros(3, source_size, source_size))
        self.register_buffer("mask", border_mask(source_size, target_size))
        lo = (source_size - target_size) // 2
        self.pad = (lo, source_size - target_size - lo, lo, source_size - target_size - lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = F.pad(self.prepare(x), self.pad)
        return inner + torch.sigmoid(self.delta) * self.mask

    @property
    def n_params(self) -> int:
        return int(self.mask.sum().item())

    def prompt_scale(self) -> torch.Tensor:
        s = torch.sigmoid(self.delta)
        return self.mask * s * (1 - s)

    def prompt_image(self) -> torch.Tensor:
        return torch.sigmoid(self.delta.detach()) * self.mask


class FullPrompt(InputTransform):
    """``vp-full`` (additive "watermark"): resize to s x s and add a full-image prompt delta.

    With ``squash=True`` the prompt is ``tanh(delta)`` (bounded); by default it is delta itself.
    """

    kind = TransformKind.VP_FULL.value

    def __init__(self, source_size: int, target_size: int, squash: bool = False) -> None:
        super().__init__(source_size, target_size)
        self.delta = nn.Parameter(torch.zeros(3, source_size, source_size))
        self.squash = squash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prompt = torch.tanh(self.delta) if self.squash else self.delta
        return resize(self.prepare(x), self.source_size) + prompt

    def prompt_scale(self) -> torch.Tensor:
        if self.squash:
            return 1 - torch.tanh(self.delta) ** 2
        return torch.ones_like(self.delta)

    def prompt_image(self) -> torch.Tensor:
        p = torch.tanh(self.delta.detach()) if self.squash else self.delta.detach()
        # Shown centred on grey: 0.5 is "no change".
        return (0.5 + p).clamp(0, 1)


class FullyConnected(InputTransform):
    """``fc``: a(x) = W vec(x_t) + c reshaped to (3, s, s); W (3s^2, 3t^2), c (3s^2,).

    W starts as the bilinear resize matrix t -> s and c at 0, so at initialisation the source
    model sees the image resized twice, native -> t (``prepare``) -> s, and training moves away
    from it. ``none`` resizes native -> s in one step: the two agree exactly when the target's
    native size is t (MNIST at t = 28), not otherwise (the 8 x 8 ``digits`` at t = 28, s = 32:
    1.6 % apart in norm, up to 0.067 per pixel).
    """

    kind = TransformKind.FC.value

    def __init__(self, source_size: int, target_size: int) -> None:
        super().__init__(source_size, target_size)
        self.weight = nn.Parameter(_resize_matrix(target_size, source_size))
        self.bias = nn.Parameter(torch.zeros(3 * source_size * source_size))
        self.register_buffer("fc_region", torch.ones(3, source_size, source_size, dtype=torch.bool))

    def fc_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 3 t^2): what W multiplies."""
        return self.prepare(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.source_size
        return F.linear(self.fc_features(x), self.weight, self.bias).reshape(-1, 3, s, s)


class FCPrompt(InputTransform):
    """``vp-fc``: an fc layer onto the inner t x t region (identity at init), a vp around it."""

    kind = TransformKind.VP_FC.value

    def __init__(self, source_size: int, target_size: int) -> None:
        super().__init__(source_size, target_size)
        d = 3 * target_size * target_size
        self.weight = nn.Parameter(torch.eye(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.prompt = PaddingPrompt(source_size, target_size)
        self.register_buffer("fc_region", self.prompt.mask == 0)

    def fc_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.prepare(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.target_size
        inner = F.linear(self.fc_features(x), self.weight, self.bias).reshape(-1, 3, t, t)
        return F.pad(inner, self.prompt.pad) + torch.sigmoid(self.prompt.delta) * self.prompt.mask

    @property
    def n_params(self) -> int:
        return self.weight.numel() + self.bias.numel() + self.prompt.n_params

    def prompt_scale(self) -> torch.Tensor:
        return self.prompt.prompt_scale()

    def prompt_image(self) -> torch.Tensor:
        return self.prompt.prompt_image()


_TRANSFORMS: dict[str, type[InputTransform]] = {
    TransformKind.NONE.value: NoTransform,
    TransformKind.VP.value: PaddingPrompt,
    TransformKind.VP_FULL.value: FullPrompt,
    TransformKind.FC.value: FullyConnected,
    TransformKind.VP_FC.value: FCPrompt,
}


assert set(_TRANSFORMS) == set(transforms.KINDS), "each transform needs a spec and a module"


def build_transform(kind: str, source_size: int, target_size: int) -> InputTransform:
    """Factory: ``kind`` one of ``transforms.KINDS``."""
    return _TRANSFORMS[transforms.spec(kind).kind](source_size, target_size)


def list_transforms() -> list[str]:
    return list(transforms.KINDS)
