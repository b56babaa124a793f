"""Named starting points the pages offer one click away, and the warm-up computes in advance.

A ``Setup`` is a base configuration (changes to ``ExperimentConfig()``); a ``Comparison`` is a
setup with two to four Compare columns (each a few changes to the base) and the lesson it is
there to show. Pure data: no torch, no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reprog_core.config import ExperimentConfig


@dataclass(frozen=True)
class Setup:
    key: str  # URL-safe name
    label: str  # what a page calls it (a button: short)
    changes: dict[str, Any] = field(default_factory=dict)  # to ExperimentConfig()
    description: str = ""  # one sentence: what it is

    def config(self) -> ExperimentConfig:
        return ExperimentConfig(**self.changes)


@dataclass(frozen=True)
class Comparison:
    key: str
    label: str
    setup: Setup
    columns: tuple[dict[str, Any], ...]  # each: changes to the setup's config
    lesson: str  # one sentence: what to look at
    button: str = ""  # a short name for a button (default: the label)

    def configs(self) -> list[ExperimentConfig]:
        base = self.setup.config()
        return [base.replace(**c) for c in self.columns]


PRETRAINED = Setup(
    "pretrained",
    "ImageNet model → MNIST (default)",
    description="EfficientNet-Lite0 trained on ImageNet, reprogrammed to MNIST digits by a "
    "border prompt",
)
PIXEL = Setup(
    "pixel",
    "pixel CNN: animals → digits",
    {"source_family": "cnn", "source_size": 32, "target": "digits", "transform": "fc"},
    "a small CNN trained here on animal silhouettes, reprogrammed to scikit-learn's digits by a "
    "fully connected layer (the earlier default pair)",
)
ENCODER_HEAD = Setup(
    "encoder-head",
    "ImageNet encoder + CNN head",
    {"source_family": "clip-cnn", "backbone": "efficientnet-lite0"},
    "the paper's set-up: a frozen ImageNet encoder with a CNN head of depth L trained on animal "
    "silhouettes, reprogrammed to MNIST",
)
SETUPS = (PRETRAINED, PIXEL, ENCODER_HEAD)

COMPARISONS = (
    Comparison(
        "weights",
        "pretrained vs random weights: the source model's quality",
        PRETRAINED,
        ({}, {"weights": "random"}),
        "The same network, the same prompt, the same 300 steps: with ImageNet weights the prompt "
        "reprograms it, with random weights it moves far less (by seed, 6 to 22 points against "
        "32 to 59: docs/results.md). Compare the spectra and the kernel's regression accuracy: "
        "which statistics rank the two the right way?",
        button="ImageNet vs random weights",
    ),
    Comparison(
        "prompt-shape",
        "border prompt vs full-image prompt: the transformation's kernel",
        PIXEL,
        ({"transform": "vp"}, {"transform": "vp-full"}),
        "One pixel source, two prompts. The border prompt adds nearly the same change to every "
        "image, so its kernel has one dominant direction; the full-image prompt's kernel spreads "
        "over many. Their spectra say which fits better before any training.",
        button="border vs full-image prompt",
    ),
    Comparison(
        "transforms",
        "every transformation on the pretrained model",
        PRETRAINED,
        ({"transform": "vp"}, {"transform": "vp-full"}, {"transform": "fc"}, {"transform": "none"}),
        "Border prompt, full-image prompt and fully connected layer on the same frozen ImageNet "
        "model, with 'none' (nothing trained) as the floor.",
        button="every transformation",
    ),
    Comparison(
        "pixel-pair",
        "fc vs vp on the pixel CNN (the earlier default pair)",
        PIXEL,
        ({"transform": "fc"}, {"transform": "vp"}),
        "A small source trained from scratch on silhouettes: the fully connected layer reprograms "
        "it, the border prompt barely moves it.",
        button="fc vs vp, pixel CNN",
    ),
)


def default_views() -> list[tuple[str, ExperimentConfig]]:
    """(label, config) of what the default pages ask for first: Explore's default and the second
    column of the default Compare (the same model with random weights)."""
    base = ExperimentConfig()
    return [
        ("default Explore", base),
        ("default Compare, column B (random weights)", base.replace(weights="random")),
    ]


def what_ifs() -> list[tuple[str, ExperimentConfig]]:
    """(label, config) of the what-ifs the pages offer one click away (the comparisons' columns,
    then the other set-ups), each experiment once, leaving out ``default_views``."""
    seen = {cfg.key("explore") for _, cfg in default_views()}
    out = []
    labelled = [
        (f"Compare '{comp.key}', column {letter}", cfg)
        for comp in COMPARISONS
        for letter, cfg in zip("ABCD", comp.configs())
    ]
    labelled += [(f"Explore set-up '{setup.key}'", setup.config()) for setup in SETUPS]
    for label, cfg in labelled:
        if cfg.key("explore") not in seen:
            seen.add(cfg.key("explore"))
            out.append((label, cfg))
    return out


def comparison(key: str) -> Comparison | None:
    return next((c for c in COMPARISONS if c.key == key), None)


def setup(key: str) -> Setup | None:
    return next((s for s in SETUPS if s.key == key), None)
