"""The pipeline's report: robustness conditions, the results table and files, the predictions picture."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fusion_helpers import H, W, fusion_config, write_dataset

from fusionseg.cli import main
from fusionseg.data.catalog import SYNTHETIC
from fusionseg.engine.visualize import GRID_GAP_PX, colorize_labels
from fusionseg.errors import ConfigError
from fusionseg.workflows.pipeline import run_pipeline
from fusionseg.workflows.report import CLEAN, format_miou, parse_conditions, pick_frames


def test_parse_conditions_normalises_and_skips_unused_modalities():
    conditions, skipped = parse_conditions(
        ["rgb=zero", " depth=noise , rgb=fog ", "jet=dark", "nir=zero"], ["rgb", "depth"]
    )
    assert [c.name for c in conditions] == [CLEAN, "rgb=zero", "depth=noise,rgb=fog"]
    assert [c.title for c in conditions] == [CLEAN, "rgb dropped", "depth noise + rgb fog"]
    assert (
        conditions[2].kinds == {"depth": "noise", "rgb": "fog"}
        and conditions[2].slug == "depth-noise_rgb-fog"
    )
    assert skipped == ("jet=dark", "nir=zero")


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["depth=fog"], "lighting"),
        (["rgb=blur"], "unknown corruption 'blur'"),
        (["rgb"], "expected MODALITY=KIND"),
        (["rgb=zero", "rgb=zero"], "given twice"),
        (["rgb=zero,rgb=dark"], "given twice"),
        ([" , "], "empty condition"),
    ],
)
def test_parse_conditions_errors_name_the_key(specs, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_conditions(specs, ["rgb", "depth"])
    assert str(info.value).startswith("fusion.pipeline_robustness: ")


def test_pick_frames_spreads_over_the_list():
    assert pick_frames(10, 4) == [0, 3, 6, 9]
    assert pick_frames(3, 4) == [0, 1, 2]
    assert pick_frames(5, 0) == [] and pick_frames(0, 3) == []


def test_bad_condition_fails_before_training(tmp_path):
    cfg = fusion_config(
        tmp_path / "no-data",
        fusion={"pipeline_robustness": ["depth=dark"]},
        train={"out_dir": str(tmp_path / "run")},
    )
    with pytest.raises(ConfigError, match="fusion.pipeline_robustness"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def cheap_init(monkeypatch):
    """Plain normal draws instead of truncated ones for the He init: the distribution does not matter
    to these wiring tests, and truncated draws dominate the time of building (and, when a checkpoint is
    loaded, rebuilding) ResNet-50 trunks on a CPU."""

    def normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        with torch.no_grad():
            return tensor.normal_(mean, std, generator=generator).clamp_(a, b)

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", normal_)


def check_prediction_picture(path: Path, data: Path, columns: list[str]) -> None:
    """The predictions grid: one column per input, ground truth and model; frame val2 in the second row."""
    picture = cv2.imread(str(path))
    assert picture is not None
    assert picture.shape[1] == GRID_GAP_PX + len(columns) * (W + GRID_GAP_PX)
    header = picture.shape[0] - 2 * (H + GRID_GAP_PX)  # two frame rows under the title band
    assert 12 <= header <= 40
    gt = cv2.imread(str(data / "label" / "val2.png"), cv2.IMREAD_UNCHANGED)  # second row: frame val2
    y0, x0 = header + H + GRID_GAP_PX, GRID_GAP_PX + 2 * (W + GRID_GAP_PX)
    np.testing.assert_array_equal(picture[y0 : y0 + H, x0 : x0 + W], colorize_labels(gt, SYNTHETIC.palette))


def test_tiny_pipeline_writes_table_and_picture(tmp_path, cheap_init, monkeypatch, capsys):
    """Experts rgb + depth, SSMA, then the report: clean and robustness scores, files, a rerun, the CLI."""
    data = write_dataset(tmp_path / "data", n_train=2, n_val=3)
    run_dir = tmp_path / "run"
    cfg = fusion_config(
        data,
        fusion={
            "pipeline_schemes": ["ssma"],
            "iterations": 1,
            "pipeline_robustness": ["rgb=zero", "nir=zero"],
            "pipeline_report_frames": 2,
        },
        train={"iterations": 1, "val_every": 1, "out_dir": str(run_dir)},
    )
    result = run_pipeline(cfg)
    models = ["expert rgb", "expert depth", "ssma"]
    table = result.results
    assert table is not None and list(table.models) == models
    assert [c.name for c in table.conditions] == [CLEAN, "rgb=zero"]
    assert table.skipped_conditions == ("nir=zero",) and table.num_images == 3
    status = {m: {c: s.status for c, s in row.items()} for m, row in table.scores.items()}
    assert status == {
        "expert rgb": {CLEAN: "done", "rgb=zero": "done"},
        "expert depth": {CLEAN: "done", "rgb=zero": "unaffected"},
        "ssma": {CLEAN: "done", "rgb=zero": "done"},
    }
    assert table.miou("expert depth", "rgb=zero") == table.miou("expert depth")
    for model in ("expert rgb", "ssma"):  # each evaluation has its own metrics file
        score = table.scores[model]["rgb=zero"]
        assert score.metrics == run_dir / "eval" / model.replace(" ", "-") / "rgb-zero" / "metrics.json"
        assert json.loads(score.metrics.read_text())["miou"] == pytest.approx(score.miou)
    assert {s.name: s.miou for s in result.steps if s.name.startswith("evaluate")} == {
        f"evaluate {m}": table.miou(m) for m in models
    }

    saved = json.loads((run_dir / "eval" / "results.json").read_text())
    assert list(saved["models"]) == models
    assert [c["title"] for c in saved["conditions"]] == ["clean", "rgb dropped"]
    assert saved["conditions"][1]["degradations"] == {"rgb": "zero"}
    assert saved["models"]["ssma"]["scores"]["rgb=zero"]["miou"] == pytest.approx(
        table.miou("ssma", "rgb=zero")
    )
    assert saved["skipped_conditions"] == ["nir=zero"]
    columns = saved["predictions"]["columns"]
    assert columns[0] == "rgb" and columns[1] == "depth (JET)" and columns[2:] == ["ground truth", *models]
    assert saved["predictions"]["frames"] == ["val0", "val2"]
    # the steps each model trained, from its run's metrics.csv (a budgeted run fits them to the machine)
    assert {m: saved["models"][m]["training"]["steps"] for m in models} == dict.fromkeys(models, 1)
    assert all(saved["models"][m]["training"]["best_step"] == 1 for m in models)
    assert all(table.training[m].seconds is not None and table.training[m].seconds >= 0 for m in models)
    markdown = (run_dir / "eval" / "results.md").read_text()
    assert "Training (steps run, wall clock): expert rgb 1 steps in" in markdown
    assert "| model | clean | rgb dropped |" in markdown
    assert f"| expert depth | {format_miou(table.miou('expert depth'))} | *" in markdown  # repeated: italics

    check_prediction_picture(result.files["predictions_png"], data, columns)

    # rerun: stages skipped, every evaluation reused, the report redrawn
    again = run_pipeline(cfg)
    assert {s.status for s in again.steps if s.name != "report"} == {"skipped"}
    assert again.results.training == table.training  # also when every evaluation is reused
    # a finished stage is reused only under the config it was trained with
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=5e-4))
    with pytest.raises(ConfigError, match=r"experts/rgb/last\.pt: this run was started with another config"):
        run_pipeline(changed)
    for model, row in again.results.scores.items():
        for cond, score in row.items():
            assert score.status in ("skipped", "unaffected")
            assert score.miou == table.miou(model, cond)

    # the CLI prints the table on stdout, stage statuses in one line
    monkeypatch.setattr("fusionseg.api.load_config", lambda *args, **kwargs: cfg)
    monkeypatch.setattr("fusionseg.api.run_pipeline", lambda *args, **kwargs: result)
    assert main(["train-pipeline", "unused.yaml"]) == 0
    out = capsys.readouterr().out
    header_line = next(line for line in out.splitlines() if "rgb dropped" in line)
    assert "clean" in header_line and "model" in header_line
    row = next(line for line in out.splitlines() if line.strip().startswith("expert rgb"))
    assert format_miou(table.miou("expert rgb", "rgb=zero")) in row
    assert "expert rgb done" in out and "predictions.png" in out and "results.json" in out
