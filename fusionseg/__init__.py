"""fusionseg: multimodal semantic segmentation (AdapNet++, SSMA, CMoDE) in PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Segmenter", "__version__"]

if TYPE_CHECKING:
    from fusionseg.workflows.segmenter import Segmenter


def __getattr__(name: str) -> Any:
    """`fusionseg.Segmenter` is imported on first use: `import fusionseg` stays free of torch."""
    if name == "Segmenter":
        from fusionseg.workflows.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
