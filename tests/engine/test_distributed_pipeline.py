"""`train-pipeline` under torchrun (2 CPU processes, gloo): single-process steps run on rank 0 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_under_torchrun_reports_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "fusionseg", "make-synthetic", "--out", str(data), "--num", "8"]
        + ["--size", "64x128", "--workers", "1"],
        check=True,
        capture_output=True,
    )
    runs = tmp_path / "runs"
    sets = [
        f"data.root={data}",
        f"train.out_dir={runs}",
        "data.height_px=64",
        "data.width_px=128",
        "train.iterations=2",
        "fusion.iterations=2",
        "train.val_every=2",
        "train.ckpt_every=2",
        "fusion.pipeline_schemes=[ssma]",
        "fusion.pipeline_prepare=[jet]",
        "data.modalities=[rgb, jet]",
        "fusion.pipeline_report_frames=1",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "fusionseg"]
    cmd += ["train-pipeline", str(ROOT / "configs" / "synthetic-pipeline.yaml"), "--json"]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)  # exactly one JSON object: rank 1 prints nothing
    assert set(report["miou"]) == {"expert rgb", "expert jet", "ssma"}
    assert (runs / "eval" / "results.json").is_file()
    assert (runs / "prepared" / "meta.json").is_file()
