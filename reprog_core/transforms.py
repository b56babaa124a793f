"""What the project knows about each input transformation a_theta, in one place.

Every module that treats transforms differently reads this table: the config (choices, default
learning rates, the padding constraint), the structured NTK path (which Jacobian parts a transform
has and the parameter names it must expose), the memory estimates (parameter and kernel column
counts), the figures and pages (label, colour, order). The ``nn.Module`` classes themselves live in
``input_transform.py``; this module imports nothing heavy, so the config and the CLI can read it
without torch.

Adding a transform: one ``TransformSpec`` here, its module in ``input_transform.py``, its tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformSpec:
    """One input transformation (docs/science.md, "Input transformations").

    ``prompt``/``fc``: the parts of its Jacobian the structured kernel path knows: a prompt
    (J = G diag(D), one column per prompt pixel) and/or an fc layer (J = G_region (x) [u, 1]).
    A transform with neither is served by the Jacobian reference path only.
    """

    kind: str
    label: str  # what pages and legends call it
    colour: str  # one colour per transform on every page
    adam_lr: float  # Adam's default step size (sgd's comes from the spectrum)
    params: frozenset[str]  # the names its ``named_parameters()`` must have
    prompt: bool = False  # a prompt over the source input (border only when ``pads``)
    fc: bool = False  # an fc layer writing the source input (the inner t x t square when ``pads``)
    pads: bool = False  # places the t x t target inside the s x s source: needs t < s
    float32_gradients: bool = False  # float32 input gradients keep its kernel's rank (bench)

    def n_params(self, source_size: int, target_size: int) -> int:
        """Trainable parameters T at source size s and target size t: the prompt tensor is the
        whole 3 x s x s (padding masks it), the fc layer a weight and a bias."""
        _, fc_out, fc_in = self.kernel_columns(source_size, target_size)
        return (3 * source_size**2 if self.prompt else 0) + fc_out * (fc_in + 1)

    def kernel_columns(self, source_size: int, target_size: int) -> tuple[int, int, int]:
        """(prompt columns, fc output columns, fc input dim) of the structured kernel path.

        Without padding the prompt covers all 3 s^2 inputs and the fc layer writes all of them
        from the 3 t^2 target pixels; with padding the prompt is the border (3 s^2 - 3 t^2) and
        the fc layer maps the 3 t^2 target pixels onto the inner square.
        """
        s2, t2 = 3 * source_size**2, 3 * target_size**2
        prompt = (s2 - t2 if self.pads else s2) if self.prompt else 0
        fc_out = (t2 if self.pads else s2) if self.fc else 0
        return prompt, fc_out, t2 if self.fc else 0


SPECS: dict[str, TransformSpec] = {
    spec.kind: spec
    for spec in (
        TransformSpec(
            kind="vp",
            label="padding visual prompt (vp)",
            colour="#3b5bdb",
            adam_lr=0.05,
            params=frozenset({"delta"}),
            prompt=True,
            pads=True,
            float32_gradients=True,
        ),
        TransformSpec(
            kind="vp-full",
            label="full-image additive prompt (vp-full)",
            colour="#0ca678",
            adam_lr=0.05,
            params=frozenset({"delta"}),
            prompt=True,
            float32_gradients=True,
        ),
        TransformSpec(
            kind="fc",
            label="fully connected layer (fc)",
            colour="#e8590c",
            adam_lr=1e-3,
            params=frozenset({"weight", "bias"}),
            fc=True,
        ),
        TransformSpec(
            kind="vp-fc",
            label="fc inside + padding prompt (vp-fc)",
            colour="#ae3ec9",
            adam_lr=1e-3,
            params=frozenset({"weight", "bias", "prompt.delta"}),
            prompt=True,
            fc=True,
            pads=True,
        ),
        TransformSpec(
            kind="none",
            label="resize only, no training (none)",
            colour="#868e96",
            adam_lr=0.0,
            params=frozenset(),
        ),
    )
}

KINDS: tuple[str, ...] = tuple(SPECS)  # the canonical order pages and tables use
# The transforms with parameters: those a target NTK is taken with respect to (all but 'none').
TRAINED: tuple[str, ...] = tuple(kind for kind, s in SPECS.items() if s.params)


def spec(kind: str) -> TransformSpec:
    """The spec of ``kind``; ``ValueError`` naming the choices when it is unknown."""
    try:
        return SPECS[kind]
    except KeyError:
        raise ValueError(f"unknown transform {kind!r}; choose one of {list(KINDS)}") from None


def ordered(kinds: set[str] | list[str]) -> list[str]:
    """``kinds`` in the canonical order, unknown ones last (sorted)."""
    present = set(kinds)
    return [k for k in KINDS if k in present] + sorted(present - set(KINDS))
