"""Import of the authors' TensorFlow-1 checkpoints without TensorFlow (issue 16): the bundle reader and the
name mapping onto the fusionseg models."""

from __future__ import annotations

from fusionseg.tfimport.bundle import TensorInfo, TFCheckpoint, model_tensors, resolve_prefix

__all__ = ["TFCheckpoint", "TensorInfo", "model_tensors", "resolve_prefix"]
