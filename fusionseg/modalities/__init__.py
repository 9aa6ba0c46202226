"""Modality preprocessors: pure numpy/OpenCV functions (no torch; see `hha_torch` for the GPU back-end).

Public API: depth completion (`fill_in_fast`, `fill_in_multiscale`), JET (`depth_to_jet`), HHA (`hha`),
surface normals (`compute_normals`, `normals_to_uint8`), vegetation indices (`compute_evi`,
`compute_ndvi`, `encode_evi`, `encode_ndvi`, `nrg_false_colour`), Cityscapes disparity to depth
(`disparity_to_depth`) and camera intrinsics (`Intrinsics`).
"""

from fusionseg.modalities.completion import KERNELS, fill_in_fast, fill_in_multiscale
from fusionseg.modalities.disparity import disparity_to_depth
from fusionseg.modalities.evi import compute_evi, compute_ndvi, encode_evi, encode_ndvi, nrg_false_colour
from fusionseg.modalities.hha import hha, hha_components, hha_to_bgr
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.jet import depth_to_jet
from fusionseg.modalities.normals import compute_normals, normals_to_uint8

__all__ = [
    "KERNELS",
    "Intrinsics",
    "compute_evi",
    "compute_normals",
    "compute_ndvi",
    "depth_to_jet",
    "disparity_to_depth",
    "encode_evi",
    "encode_ndvi",
    "fill_in_fast",
    "fill_in_multiscale",
    "hha",
    "hha_components",
    "hha_to_bgr",
    "normals_to_uint8",
    "nrg_false_colour",
]
