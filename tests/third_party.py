"""Importing the optional Transformer libraries (the `transformers` extra) for tests.

Each function returns the module, or skips the calling test with the command that
installs it. Both also work around PyPI's torchvision beside this project's
pinned CPU torch: torchvision's compiled ops are built against another torch and do not
load, and torchvision 0.28 then fails at import while registering fake kernels for two of
those ops (`RuntimeError: operator torchvision::nms does not exist`). timm imports
torchvision at import time but its models never call those ops, so declaring the two op
schemas (only after that failure) lets torchvision, and so timm, import.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
import torch

INSTALL = 'pip install -e ".[transformers]"'
_MISSING_OPS = "torchvision::nms"


def _import_torchvision() -> None:
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if _MISSING_OPS not in str(error):
            raise
        for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive below
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _import_torchvision.library = library  # type: ignore[attr-defined]
        import torchvision  # noqa: F401,F811


def import_timm() -> ModuleType:
    """timm, or a skip saying how to install it."""
    try:
        _import_torchvision()
    except ImportError:
        pytest.skip(f"torchvision (needed by timm) is not installed: {INSTALL}")
    return pytest.importorskip("timm", reason=f"timm is not installed: {INSTALL}")


def import_transformers() -> ModuleType:
    """Hugging Face transformers, or a skip saying how to install it. Its models import
    torchvision when it is installed (transformers 5), so the same workaround runs first:
    without it a test's outcome would depend on whether a timm test ran before it."""
    try:
        _import_torchvision()
    except ImportError:
        pass  # transformers works without torchvision
    return pytest.importorskip("transformers", reason=f"transformers is not installed: {INSTALL}")
