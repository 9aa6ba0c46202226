"""The export formats and their file suffixes (torch-free, so the CLI can offer them as choices)."""

from __future__ import annotations

EXPORT_FORMATS = ("onnx", "torchscript", "torch-export", "safetensors")
# default output file suffix per format (the checkpoint's name with this suffix)
SUFFIXES = {
    "onnx": ".onnx",
    "torchscript": ".torchscript.pt",
    "torch-export": ".pt2",
    "safetensors": ".safetensors",
}
