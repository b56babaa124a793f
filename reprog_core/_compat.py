"""Import-order shims so the pinned CPU torch works with the registry's torchvision.

torchvision 0.28.0 from the registry is a CUDA build; beside the CPU build of torch 2.13.0 its
import fails with ``operator torchvision::nms does not exist`` because its compiled ops cannot load.
open_clip and timm only need torchvision's Python parts, so declaring the two operator schemas
before torchvision is imported lets them import. On a machine with a matching torch the operators
exist already and this is a no-op. torchvision's C++ ops and ``torchvision.io`` stay unusable on the
CPU build: images are read with PIL everywhere in this package.
"""

from __future__ import annotations

import torch

_DONE = False


def ensure_torchvision_importable() -> None:
    """Define ``torchvision::nms``/``qnms`` schemas when the compiled ops are missing."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    try:
        torch.ops.torchvision.nms  # noqa: B018  (attribute access is the probe)
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")  # noqa: TID251
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define(
        "qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point)"
        " -> Tensor"
    )
    # Keep a reference so the library registration is not garbage collected.
    globals()["_TORCHVISION_LIB"] = lib


def import_open_clip():
    """Return the ``open_clip`` module, importing torchvision safely first."""
    ensure_torchvision_importable()
    import open_clip

    return open_clip
