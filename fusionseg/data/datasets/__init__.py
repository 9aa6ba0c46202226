"""Readers of official dataset downloads for `fusionseg prepare-dataset` (see `base.py`)."""

from __future__ import annotations

from fusionseg.data.datasets.base import SPLITS, DatasetReader, FrameRef, RawFrame
from fusionseg.data.datasets.cityscapes import CityscapesReader
from fusionseg.data.datasets.freiburg_forest import FreiburgForestReader
from fusionseg.data.datasets.nyuv2 import NYUv2Reader
from fusionseg.data.datasets.scannet import ScanNetReader
from fusionseg.data.datasets.sunrgbd import SUNRGBDReader
from fusionseg.data.datasets.synthia import SynthiaReader

__all__ = ["READERS", "SPLITS", "DatasetReader", "FrameRef", "RawFrame"]

# CLI name -> reader. One entry per dataset, one line each.
READERS: dict[str, DatasetReader] = {
    "cityscapes": CityscapesReader(),
    "synthia": SynthiaReader(),
    "freiburg-forest": FreiburgForestReader(),
    "nyuv2": NYUv2Reader(),
    "sunrgbd": SUNRGBDReader(),
    "scannet": ScanNetReader(),
}
