"""Training stages: expert loading by prefix with validation, stage groups, stage 2/3 runs (§A.5, §A.6)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from fusion_helpers import NUM_CLASSES, TinyTrunk, fusion_config, save_expert, write_dataset

from fusionseg.data.catalog import SYNTHETIC
from fusionseg.engine.checkpoint import load_checkpoint, sidecar_path
from fusionseg.errors import CheckpointError, ConfigError, DataError
from fusionseg.fusion.build import build_model
from fusionseg.fusion.fused import SSMAModel
from fusionseg.models.adapnet import trunk_state_dict
from fusionseg.workflows.train_fusion import (
    Stage,
    apply_stage,
    finetune_stage,
    fusion_run_config,
    fusion_stage,
    load_experts,
    resolve_groups,
    stage_config,
    train_fusion,
)

CHANNELS = {"rgb": 3, "depth": 1}


@pytest.fixture(scope="module")
def ssma_model():
    torch.manual_seed(0)
    return build_model(fusion_config(), in_channels=CHANNELS)


# --- loading experts ------------------------------------------------------------------------------


def test_load_experts_by_prefix_records_hashes(ssma_model, expert_ckpts, expert_states):
    sources = load_experts(ssma_model, expert_ckpts, cfg=fusion_config(), in_channels=CHANNELS)
    assert [s.modality for s in sources] == ["rgb", "depth"]
    for source in sources:
        path = expert_ckpts[source.modality]
        assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert source.sha256 == sidecar_path(path).read_text().split()[0]
        assert source.step == 7
        want = trunk_state_dict(expert_states[source.modality])
        got = ssma_model.experts[source.modality].state_dict()
        assert set(got) == set(want)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_cmode_loads_complete_experts(expert_ckpts, expert_states):
    cfg = fusion_config(fusion={"scheme": "cmode", "cmode_gate": "light"})
    torch.manual_seed(0)
    model = build_model(cfg, in_channels=CHANNELS)
    load_experts(model, expert_ckpts, cfg=cfg, in_channels=CHANNELS)
    got = model.experts["depth"].state_dict()
    assert any(k.startswith("decoder.") for k in got) and any(k.startswith("aux.") for k in got)
    assert all(torch.equal(got[k], v) for k, v in expert_states["depth"].items())


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"modalities": ["hha"]}, "modality mismatch.*'hha'.*given for 'depth'"),
        ({"num_classes": 12}, "class count mismatch: the expert has 12 classes"),
        ({"kind": "ssma"}, "not a unimodal expert"),
        ({"in_channels": {"depth": 3}}, "input channel mismatch"),
        ({"class_names": ["void", "a"]}, "class names mismatch"),
        ({"normalization": {"depth": [[1.0], [2.0]]}}, "normalisation mismatch"),
    ],
)
def test_mismatched_checkpoint_is_refused(tmp_path, ssma_model, expert_ckpts, meta, match):
    bad = save_expert(tmp_path / "bad.pt", fusion_config(), "depth", {}, **meta)
    with pytest.raises(CheckpointError, match=match) as info:
        load_experts(
            ssma_model,
            {"rgb": expert_ckpts["rgb"], "depth": bad},
            cfg=fusion_config(),
            in_channels=CHANNELS,
            class_names=SYNTHETIC.classes,
        )
    assert "bad.pt" in str(info.value)


def test_architecture_mismatch_is_refused(tmp_path, ssma_model, expert_ckpts, expert_states):
    other = fusion_config(model={"dilations": "may2019"})
    bad = save_expert(tmp_path / "dil.pt", other, "depth", {})
    with pytest.raises(CheckpointError, match="architecture mismatch.*model.dilations='may2019'"):
        load_experts(
            ssma_model, {"rgb": expert_ckpts["rgb"], "depth": bad}, cfg=fusion_config(), in_channels=CHANNELS
        )
    keys = list(expert_states["depth"])[:3]  # a checkpoint whose weights lack most trunk keys
    partial = save_expert(
        tmp_path / "keys.pt", fusion_config(), "depth", {k: expert_states["depth"][k] for k in keys}
    )
    with pytest.raises(CheckpointError, match="architecture mismatch.*keys.pt.*missing from the checkpoint"):
        load_experts(
            ssma_model,
            {"rgb": expert_ckpts["rgb"], "depth": partial},
            cfg=fusion_config(),
            in_channels=CHANNELS,
        )


def test_padding_mismatch_is_refused(tmp_path, ssma_model, expert_ckpts):
    # deepscene-tf.md §4: the same weights compute differently under TF SAME padding
    bad = save_expert(tmp_path / "pad.pt", fusion_config(model={"padding": "tf_same"}), "depth", {})
    with pytest.raises(CheckpointError, match="architecture mismatch.*model.padding='tf_same'"):
        load_experts(
            ssma_model, {"rgb": expert_ckpts["rgb"], "depth": bad}, cfg=fusion_config(), in_channels=CHANNELS
        )


def test_wrong_modality_set_and_missing_file(tmp_path, ssma_model, expert_ckpts):
    with pytest.raises(ConfigError, match="fusion.experts"):
        load_experts(ssma_model, {"rgb": expert_ckpts["rgb"]}, cfg=fusion_config(), in_channels=CHANNELS)
    with pytest.raises(CheckpointError, match="not found"):
        load_experts(
            ssma_model,
            {"rgb": expert_ckpts["rgb"], "depth": tmp_path / "nope.pt"},
            cfg=fusion_config(),
            in_channels=CHANNELS,
        )
    # the experts given for rgb as depth: the rgb checkpoint names its own modality
    with pytest.raises(CheckpointError, match="modality mismatch"):
        load_experts(
            ssma_model,
            {"rgb": expert_ckpts["rgb"], "depth": expert_ckpts["rgb"]},
            cfg=fusion_config(),
            in_channels=CHANNELS,
        )


# --- stages ---------------------------------------------------------------------------------------

GROUPS = ["experts.rgb", "experts.depth", "fusion", "decoder"]


def test_fusion_stage_trains_head_only_at_fusion_lr():
    stage = fusion_stage(fusion_config(fusion={"lr": 2e-3, "iterations": 5}), GROUPS)
    assert stage.lrs == {"fusion": 2e-3, "decoder": 2e-3}
    assert stage.iterations == 5
    unfrozen = fusion_stage(fusion_config(fusion={"freeze_experts": False}), GROUPS)
    assert set(unfrozen.lrs) == set(GROUPS)


def test_finetune_stage_defaults_and_selectors():
    stage = finetune_stage(fusion_config(), GROUPS)
    assert stage.lrs == dict.fromkeys(GROUPS, 1e-5)
    assert stage.iterations == 2  # 0 = train.iterations
    cfg = fusion_config(
        fusion={"finetune_groups": ["experts", "decoder"], "finetune_group_lrs": {"decoder": 1e-4}}
    )
    stage = finetune_stage(cfg, GROUPS)
    assert stage.lrs == {"experts.rgb": 1e-5, "experts.depth": 1e-5, "decoder": 1e-4}
    with pytest.raises(ConfigError, match="fusion.finetune_groups: 'gates' matches no parameter group"):
        finetune_stage(fusion_config(fusion={"finetune_groups": ["gates"]}), GROUPS)
    with pytest.raises(ConfigError, match="not in fusion.finetune_groups"):
        finetune_stage(
            fusion_config(fusion={"finetune_groups": ["fusion"], "finetune_group_lrs": {"decoder": 1.0e-4}}),
            GROUPS,
        )
    assert resolve_groups(["all", "fusion"], GROUPS, key="k") == GROUPS


def test_apply_stage_freezes_and_builds_groups():
    torch.manual_seed(0)
    model = SSMAModel(
        {m: TinyTrunk(3) for m in ("rgb", "depth")}, num_classes=3, deep_reduction=4, skip_reduction=2
    )
    groups = apply_stage(model, Stage("finetune", {"experts.rgb": 1e-5, "fusion": 1e-4}, 1e-6, 3))
    assert [g["name"] for g in groups] == ["experts.rgb", "fusion"]
    assert groups[0]["lr_end"] == pytest.approx(1e-7) and groups[1]["lr_end"] == pytest.approx(1e-6)
    assert model.frozen == {"experts.depth", "decoder"}
    model.train()
    assert model.experts["rgb"].training and not model.experts["depth"].training
    assert not model.decoder.training
    assert all(not p.requires_grad for p in model.decoder.parameters())
    cfg = stage_config(
        fusion_config(), Stage("fusion", {"fusion": 1e-3}, 1e-4, 9), tmp := __import__("pathlib").Path("x")
    )
    assert (cfg.train.iterations, cfg.train.lr, cfg.train.out_dir) == (9, 1e-3, str(tmp))
    with pytest.raises(ConfigError, match="no parameter group"):
        apply_stage(model, Stage("fusion", {}, 1e-4, 1))


# --- running stages 2 and 3 -----------------------------------------------------------------------


def test_train_fusion_stage2_and_3(tmp_path, tiny_data, expert_ckpts, expert_states):
    cfg = fusion_config(
        tiny_data,
        fusion={
            "experts": {m: str(p) for m, p in expert_ckpts.items()},
            "finetune": True,
            "finetune_iterations": 1,
        },
    )
    result = train_fusion(cfg, out_dir=tmp_path / "run")
    assert [s.stage for s in result.stages] == ["fusion", "finetune"]
    fusion_ckpt = load_checkpoint(result.stages[0].run_dir / "last.pt")
    assert fusion_ckpt["kind"] == "ssma" and fusion_ckpt["step"] == 2 and fusion_ckpt["stage"] == "fusion"
    assert [e["modality"] for e in fusion_ckpt["experts"]] == ["rgb", "depth"]
    assert fusion_ckpt["experts"][0]["sha256"] == hashlib.sha256(expert_ckpts["rgb"].read_bytes()).hexdigest()
    assert result.stages[0].trainable_params == sum(
        v.numel()
        for k, v in fusion_ckpt["model"].items()
        if k.startswith(("fusion.", "decoder.")) and "running" not in k and "num_batches" not in k
    )
    # stage 2 left the experts untouched: weights and BN running statistics
    for m in ("rgb", "depth"):
        trunk = trunk_state_dict(expert_states[m])
        for k, v in trunk.items():
            assert torch.equal(fusion_ckpt["model"][f"experts.{m}.{k}"], v), k
    finetune_ckpt = load_checkpoint(result.stages[1].run_dir / "last.pt")
    assert result.stages[1].run_dir == tmp_path / "run" / "finetune"
    assert finetune_ckpt["stage"] == "finetune" and finetune_ckpt["step"] == 1
    assert (
        finetune_ckpt["init_from"]["sha256"]
        == hashlib.sha256(result.stages[0].checkpoint.read_bytes()).hexdigest()
    )
    assert all(g["lr"] <= 1e-5 for g in finetune_ckpt["optimizer"]["param_groups"])
    changed = [
        k
        for k, v in finetune_ckpt["model"].items()
        if k.startswith("experts.") and v.is_floating_point() and not torch.equal(v, fusion_ckpt["model"][k])
    ]
    assert changed  # stage 3 trains the experts too (default groups: all)
    # rerun as the pipeline does: complete stages are skipped
    again = train_fusion(cfg, out_dir=tmp_path / "run", skip_complete=True)
    assert all(s.train is None for s in again.stages)
    with pytest.raises(Exception, match="`resume`"):
        train_fusion(cfg, out_dir=tmp_path / "run")
    # other expert bytes (same weights, another step) -> the finished run is not reused silently
    other = save_expert(tmp_path / "rgb2.pt", fusion_config(), "rgb", expert_states["rgb"], step=8)
    cfg_other = fusion_config(
        tiny_data,
        fusion={"experts": {"rgb": str(other), "depth": str(expert_ckpts["depth"])}, "finetune": True},
    )
    with pytest.raises(CheckpointError, match="built from another 'rgb' expert"):
        train_fusion(cfg_other, out_dir=tmp_path / "run", skip_complete=True)


def test_missing_modality_column_names_the_list(tmp_path, expert_ckpts):
    root = write_dataset(tmp_path / "rgbonly", columns=("rgb",), n_train=2, n_val=1)
    cfg = fusion_config(root, fusion={"experts": {m: str(p) for m, p in expert_ckpts.items()}})
    with pytest.raises(DataError, match=r"train.txt: no column 'depth'"):
        train_fusion(cfg, out_dir=tmp_path / "run")


def test_fusion_run_config_precedence(tmp_path, expert_ckpts):
    cfg = fusion_run_config(expert_ckpts, overrides=["train.batch_size=3"], scheme="cmode", out_dir=tmp_path)
    assert cfg.model.num_classes == NUM_CLASSES  # from the expert's saved config
    assert cfg.data.modalities == ("rgb", "depth")
    assert cfg.fusion.scheme == "cmode" and cfg.train.batch_size == 3 and cfg.train.out_dir == str(tmp_path)
    assert cfg.fusion.experts == {m: str(p) for m, p in expert_ckpts.items()}
    with pytest.raises(ConfigError, match="fusion.scheme"):
        fusion_run_config(expert_ckpts, scheme="late")
