"""Slow: SSMA fusion beats the better of its two experts on the synthetic scenes (whole pipeline)."""

from __future__ import annotations

import pytest

from fusionseg import api
from fusionseg.config import SyntheticConfig

pytestmark = pytest.mark.slow


def test_ssma_beats_best_expert_on_synthetic(tmp_path):
    """Synthetic scenes are built so that neither modality suffices: dark/foggy RGB frames and objects
    camouflaged like their background need depth, flat markings need RGB (docs/synthetic.md)."""
    data = tmp_path / "synthetic"
    api.make_synthetic(data, SyntheticConfig(num_frames=160, height_px=96, width_px=192, seed=0, workers=1))
    cfg = api.load_config(
        "configs/synthetic-pipeline.yaml",
        [
            f"data.root={data}",
            f"train.out_dir={tmp_path / 'run'}",
            "fusion.pipeline_schemes=[ssma]",
            "train.tensorboard=false",
            # fixed step counts at 96x192 (the demo config instead fits 64x128 runs to time budgets)
            "data.height_px=96",
            "data.width_px=192",
            "train.time_budget_s=0",
            "fusion.time_budget_s=0",
            "train.iterations=300",
            "fusion.iterations=200",
        ],
    )
    result = api.run_pipeline(cfg)
    print({name: round(100 * miou, 2) for name, miou in result.miou.items()})  # shown with -s
    experts = {name: miou for name, miou in result.miou.items() if name.startswith("expert")}
    assert set(experts) == {"expert rgb", "expert depth"}
    assert result.miou["ssma"] > max(experts.values()), result.miou
