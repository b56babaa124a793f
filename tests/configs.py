"""The configurations tests pin, so that a change of the product's defaults never changes what a
test runs without the test saying so.

``ExperimentConfig()`` is the pretrained ImageNet EfficientNet-Lite0 reprogrammed to MNIST by a
border prompt (``reprog_core/config.py``): a 1000-class network, seconds to minutes per step on
a CPU, for which depth, width and the source-training fields do not matter. Tests about pixel
models, and tests that only need something tiny and fast, build on ``PIXEL`` instead: the
offline pixel pair that was the default until the pretrained model (CODE_VERSION 3), a small CNN
trained here on animal silhouettes, reprogrammed to the 8 x 8 ``digits`` by an fc layer.
"""

from __future__ import annotations

from reprog_core.config_args import flag

# The old defaults of the fields whose defaults changed (and the source data set they came with).
PIXEL = {
    "source_family": "cnn",
    "source_data": "animal",
    "source_size": 32,
    "target": "digits",
    "transform": "fc",
}
# clip-cnn's open_clip tower and its weights before the EfficientNet encoder became the default.
CLIP_TOWER = {"backbone": "ViT-S-32", "weights": "random"}

# ``PIXEL`` as command-line flags; flags after them override them (argparse keeps the last).
PIXEL_FLAGS = [arg for name, value in PIXEL.items() for arg in (flag(name), str(value))]
