"""Config loading: defaults, YAML differences, --set overrides, and errors naming the dotted path."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionseg.config import (
    RunConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
)
from fusionseg.errors import ConfigError


def test_defaults_follow_the_paper_schedule() -> None:
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.train.lr == 1e-3 and cfg.train.lr_end == 1e-4 and cfg.train.poly_power == 0.9
    assert cfg.model.aux_weights == (0.6, 0.5)
    assert cfg.model.easpp_rates == (3, 6, 12)


def test_yaml_then_overrides_in_order(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 0.0005\n  batch_size: 4\ndata:\n  modalities: [rgb, hha]\n")
    cfg = load_config(path, ["train.batch_size=2", "model.easpp_rates=[6, 12, 18]"])
    assert cfg.train.lr == 5e-4
    assert cfg.train.batch_size == 2
    assert cfg.data.modalities == ("rgb", "hha")
    assert cfg.model.easpp_rates == (6, 12, 18)


def test_int_is_accepted_where_float_is_expected() -> None:
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.nope=1", "unknown config key 'train.nope'"),
        ("nope.lr=1", "unknown config key 'nope'"),
        ("train.batch_size=two", "train.batch_size: expected an integer"),
        ("train.batch_size=true", "train.batch_size: expected an integer"),
        ("train.amp=fp8", "train.amp: 'fp8' is not one of"),
        ("model.easpp_rates=[1, 2]", "model.easpp_rates: expected 3 values"),
        ("fusion.experts=5", "fusion.experts: expected a mapping"),
        ("train.lr", "is not of the form"),
        ("=3", "is not of the form"),
    ],
)
def test_bad_overrides_name_the_dotted_path(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_bad_file_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown config key 'train.lrr'"):
        load_config(unknown)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)


def test_yaml_is_read_with_the_safe_loader(tmp_path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_dump_round_trips(tmp_path) -> None:
    cfg = load_config(None, ["fusion.experts={rgb: a.pt, depth: b.pt}", "data.modalities=[rgb, depth]"])
    path = dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text())["fusion"]["experts"] == {"rgb": "a.pt", "depth": "b.pt"}


def test_configs_folder_files_are_valid() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(folder.glob("*.yaml"))
    names = {p.name for p in files}
    # the configs the README, the demo and docs/training.md name: a glob that finds nothing must fail
    expected = {
        "synthetic-pipeline.yaml",
        "synthetic-rgb.yaml",
        "synthetic-depth.yaml",
        "synthetic-ssma.yaml",
    }
    assert expected <= names, f"configs/ lacks {sorted(expected - names)}"
    for path in files:
        cfg = load_config(path)
        assert isinstance(cfg, RunConfig), path
        # each file holds only differences from the defaults, and at least one
        assert config_to_dict(cfg) != config_to_dict(RunConfig()), f"{path.name} changes nothing"


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.integers())),
        max_size=4,
    )
)
def test_fuzzed_mappings_raise_only_config_errors(values) -> None:
    try:
        cfg = config_from_dict(values)
    except ConfigError:
        return
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_parse_override_nests() -> None:
    assert parse_override("a.b.c=1.5") == {"a": {"b": {"c": 1.5}}}


@pytest.mark.parametrize("text", ["5e-4", "1E-3", "2.5e-4", ".5e-2", "+1e3"])
def test_scientific_notation_is_a_number_in_overrides_and_files(text, tmp_path) -> None:
    """YAML 1.1 reads `5e-4` as a string; the documented `--set train.lr=5e-4` must still work."""
    assert load_config(None, [f"train.lr={text}"]).train.lr == float(text)
    path = tmp_path / "lr.yaml"
    path.write_text(f"train:\n  lr: {text}\n")
    assert load_config(path).train.lr == float(text)


def test_a_word_is_still_not_a_number() -> None:
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="train.iterations: expected an integer"):
        load_config(None, ["train.iterations=1e3"])  # integers stay exact
