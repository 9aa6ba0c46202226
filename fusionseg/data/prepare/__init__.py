"""Batch depth preparation (`fusionseg prepare-depth`): depth and NIR frames -> 8-bit modality images.

The job has three steps:

1. **Plan** (`plan_prepare`): find the frames (a list file, a dataset root with list files or one folder
   per modality, or a folder of depth PNGs matched by a glob pattern), resolve the depth unit and the
   camera intrinsics (never guessed), and name one output per frame and product, mirroring the input
   ids: ``<out>/<product>/<id>.png``.
2. **Run** (`run_prepare`): process the frames in a process pool, one frame per task. Outputs that
   already exist are skipped; every write is atomic (temp file, then rename), so an existing file is
   always complete and a killed run resumes where it stopped. A bad frame becomes a failure entry
   naming the file and the problem; the batch carries on.
3. **Record**: a new list file per input list (the input columns plus one column per product, paths
   relative to the new list) holding the frames that succeeded, and ``meta.json`` with every
   parameter, the intrinsics, the fusionseg version and each frame's status.

Per-frame pipeline (reference/modalities.md): depth in metres -> optional ip_basic completion (§1) ->
HHA (§3; the completed depth feeds it and the raw input gives the missing mask, §3.1), JET (§2) and
normals (§3.3); EVI/NDVI (§4) from the NIR and RGB columns.

Modules, one concern each: `options` (products, columns, `PrepareOptions`), `tasks` (task, plan, result and
summary records), `intrinsics` (camera files), `discover` (finding the frames), `plan` (`plan_prepare`),
`frame` (`process_frame`, in the workers), `torch_hha` (batched HHA in the main process), `resume`
(`output_intact`), `record` (list files, meta.json, summary) and `runner` (`run_prepare`, `prepare_depth`).
"""

from fusionseg.data.prepare.frame import process_frame
from fusionseg.data.prepare.intrinsics import read_intrinsics_file, resolve_intrinsics
from fusionseg.data.prepare.options import (
    DEPTH_PRODUCTS,
    FOLDER_LIST_NAME,
    GEOMETRY_PRODUCTS,
    INTRINSICS_COLUMNS,
    META_KIND,
    META_NAME,
    NIR_COLUMN,
    PRODUCTS,
    RGB_COLUMN,
    SPECTRAL_PRODUCTS,
    PrepareOptions,
)
from fusionseg.data.prepare.plan import plan_prepare
from fusionseg.data.prepare.resume import output_intact
from fusionseg.data.prepare.runner import prepare_depth, run_prepare
from fusionseg.data.prepare.tasks import FrameResult, FrameTask, ListPlan, PreparePlan, PrepareSummary

__all__ = [
    "DEPTH_PRODUCTS",
    "FOLDER_LIST_NAME",
    "GEOMETRY_PRODUCTS",
    "INTRINSICS_COLUMNS",
    "META_KIND",
    "META_NAME",
    "NIR_COLUMN",
    "PRODUCTS",
    "RGB_COLUMN",
    "SPECTRAL_PRODUCTS",
    "FrameResult",
    "FrameTask",
    "ListPlan",
    "PrepareOptions",
    "PreparePlan",
    "PrepareSummary",
    "output_intact",
    "plan_prepare",
    "prepare_depth",
    "process_frame",
    "read_intrinsics_file",
    "resolve_intrinsics",
    "run_prepare",
]
