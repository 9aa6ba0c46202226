"""fusionseg: multimodal semantic segmentation (AdapNet++, SSMA, CMoDE) in PyTorch."""

__version__ = "0.1.0"

__all__ = ["__version__"]
