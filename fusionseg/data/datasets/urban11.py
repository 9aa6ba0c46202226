"""The DeepScene 11-class urban label space (`reference/adapnetpp.md` §12) and how classes merge into it.

This is the one table of the merge, shared by the Cityscapes (`--classes 11`) and SYNTHIA readers. The
original gives the 11 class names only, not how the raw classes merge (§12: "the re-implementation
must choose and document a mapping"). The 11 names are SYNTHIA's own classes 1-11 in the same order,
which are CamVid's 11 classes (SegNet); we merge as CamVid's 32 -> 11 grouping does:

* wall -> Building (CamVid groups Wall, Archway, Bridge and Tunnel with Building);
* traffic light -> Traffic Sign (CamVid's SignSymbol holds TrafficLight);
* terrain -> Vegetation (grass and soil beside the road; CamVid's VegetationMisc joins Tree;
  leaving it void would drop about 1 % of Cityscapes pixels from training and mIoU);
* train -> Car/Truck/Bus (CamVid groups Train with Car, SUVPickupTruck and Truck_Bus).

Source classes are named in Cityscapes' vocabulary (cityscapesScripts `labels.py` names); classes not
listed here (and everything Cityscapes' 19-class benchmark ignores) are void.
"""

from __future__ import annotations

__all__ = ["URBAN11_MERGE", "urban11_id"]

# Cityscapes-vocabulary class name -> DeepScene 11-class id (CITYSCAPES11.classes[id]).
URBAN11_MERGE: dict[str, int] = {
    "sky": 1,
    "building": 2,
    "wall": 2,  # our choice, see above
    "road": 3,
    "lane marking": 3,  # SYNTHIA only: painted on the road (Cityscapes labels it road)
    "sidewalk": 4,
    "fence": 5,
    "vegetation": 6,
    "terrain": 6,  # our choice, see above
    "pole": 7,
    "car": 8,
    "truck": 8,
    "bus": 8,
    "train": 8,  # our choice, see above
    "traffic sign": 9,
    "traffic light": 9,  # our choice, see above
    "person": 10,
    "rider": 11,
    "bicycle": 11,
    "motorcycle": 11,
}


def urban11_id(name: str) -> int:
    """The 11-class id of a Cityscapes-vocabulary class name (0 = void for names not merged)."""
    return URBAN11_MERGE.get(name, 0)
