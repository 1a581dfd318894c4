"""The warnings an export is known to print and that say nothing about the exported file, filtered around the
export call only (never globally); ``show=True`` (the programs' ``--verbose``) lets them through.

Each entry is (category, module that issues it, message) and is documented in docs/onnx.md, with why it is
harmless: the export traces torchvision's detection code and fixes sizes as constants on purpose (the parity
check against PyTorch at other sizes proves the graph), and the exporter reports its own internals. Warnings of
any other module, message or category still reach the user: tracing a model yourself still warns that our TF
"SAME" padding is fixed for the traced size, because there it may matter.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

from torch.jit import TracerWarning

#: (category, issuing module regex, message regex); ``warnings.filterwarnings`` anchors both at the start.
KNOWN_EXPORT_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # Our TF "SAME" padding reads the map size as an int, so the trace fixes it: exact here, because the exported
    # graphs pad images to a multiple of 32 and every map keeps its parity at every size (onnx/detector.py).
    (TracerWarning, r"nasnet_zoo\.layers\.padding", r"Converting a tensor to a Python integer"),
    # torchvision's detection code under the tracer: image sizes, anchors and scales become constants of the trace.
    (TracerWarning, r"torch(vision)?(\.|$)", r"Converting a tensor to a Python (integer|float|boolean|number)"),
    (TracerWarning, r"torchvision\.", r"torch\.(as_)?tensor results are registered as constants in the trace"),
    (TracerWarning, r"torchvision\.", r"Iterating over a tensor might cause the trace to be incorrect"),
    (UserWarning, r"torchvision\.", r"To copy construct from a tensor, it is recommended"),
    # The TorchScript exporter, which the detector exports use deliberately (docs/onnx.md), about itself.
    (DeprecationWarning, r"nasnet_zoo\.onnx\.", r"You are using the legacy TorchScript-based ONNX export"),
    (DeprecationWarning, r"torch\.onnx\.", r"The feature will be removed"),
    (FutureWarning, r"torch\.jit\.", r"`torch\.jit\.script` is deprecated"),
    (UserWarning, r"torch\.onnx\.", r"Constant folding - Only steps=1 can be constant folded"),
    (UserWarning, r"torch\.onnx\.", r"Exporting aten::index operator of advanced indexing in opset"),
)


@contextlib.contextmanager
def known_export_warnings_filtered(show: bool = False) -> Iterator[None]:
    """Inside the block, the :data:`KNOWN_EXPORT_WARNINGS` are dropped (unless ``show``); all others pass."""
    with warnings.catch_warnings():
        if not show:
            for category, module, message in KNOWN_EXPORT_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
        yield
