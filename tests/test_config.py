from dataclasses import dataclass

import pytest

from asr_kd.config import load_section
from asr_kd.errors import ConfigError


@dataclass(frozen=True)
class Demo:
    size: int = 1
    name: str = "x"
    span: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.size < 0:
            raise ValueError("size must be non-negative")


def test_defaults_without_file():
    assert load_section(None, "demo", Demo) == Demo()


def test_parent_chain_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("demo:\n  size: 3\n  name: base\n")
    (tmp_path / "variant.yaml").write_text("parent: base.yaml\ndemo:\n  name: variant\n")
    cfg = load_section(tmp_path / "variant.yaml", "demo", Demo)
    assert cfg == Demo(size=3, name="variant")
    cfg = load_section(tmp_path / "variant.yaml", "demo", Demo, ["size=7", "demo.span=[1, 2]"])
    assert cfg.size == 7 and cfg.span == (1, 2)


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("demo:\n  sise: 3\n")
    with pytest.raises(ConfigError, match="unknown option.*sise"):
        load_section(tmp_path / "c.yaml", "demo", Demo)


def test_invalid_value_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="size must be non-negative"):
        load_section(None, "demo", Demo, ["size=-1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_section(tmp_path / "nope.yaml", "demo", Demo)
    with pytest.raises(ConfigError, match="key=value"):
        load_section(None, "demo", Demo, ["size"])


def test_parent_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("parent: b.yaml\n")
    (tmp_path / "b.yaml").write_text("parent: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_section(tmp_path / "a.yaml", "demo", Demo)


@dataclass(frozen=True)
class Feats:
    num_mel_bins: int = 80
    frame_shift: float = 0.01
    device: str | None = None
    dither: bool = False
    span: tuple[float, float] = (0.0, 1.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eighty", "an integer"),
        ("80.5", "an integer"),
        ("true", "an integer"),
        ("[80]", "an integer"),
    ],
)
def test_wrong_type_names_key_type_and_file(tmp_path, value, expected):
    path = tmp_path / "c.yaml"
    path.write_text(f"features:\n  num_mel_bins: {value}\n")
    with pytest.raises(ConfigError) as e:
        load_section(path, "features", Feats)
    assert str(path) in str(e.value) and "[features]" in str(e.value)
    assert f"num_mel_bins must be {expected}" in str(e.value)


def test_wrong_type_from_set_is_named_so(tmp_path):
    with pytest.raises(
        ConfigError, match=r"frame_shift \(from --set\) must be a number, got 'fast'"
    ):
        load_section(None, "features", Feats, ["frame_shift=fast"])
    with pytest.raises(
        ConfigError, match=r"span \(from --set\) must be a list \(tuple\[float, float\]\)"
    ):
        load_section(None, "features", Feats, ["span=[1, 2, 3]"])
    with pytest.raises(ConfigError, match=r"dither \(from --set\) must be true or false, got 2"):
        load_section(None, "features", Feats, ["dither=2"])


def test_values_converted_where_unambiguous():
    cfg = load_section(None, "features", Feats, ["frame_shift=1e-2", "span=[1, 2]", "device=null"])
    assert cfg.frame_shift == 0.01 and cfg.span == (1.0, 2.0) and cfg.device is None
    assert load_section(None, "features", Feats, ["frame_shift=1"]).frame_shift == 1.0


@pytest.mark.parametrize("item", ["num_mel_bins", "=3", ".num_mel_bins=3", "num_mel_bins=[1,"])
def test_malformed_set_is_refused(item):
    with pytest.raises(ConfigError, match=r"--set '"):
        load_section(None, "features", Feats, [item])


def test_unknown_section_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("features:\n  num_mel_bins: 40\nteachr:\n  lr: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: unknown section 'teachr'.*did you mean 'teacher'"
    ):
        load_section(path, "features", Feats)
    with pytest.raises(ConfigError, match="unknown section 'teachr'"):
        load_section(None, "features", Feats, ["teachr.lr=0.1"])
    path.write_text("extra_sections: [teachr]\nfeatures:\n  num_mel_bins: 40\nteachr:\n  lr: 0.1\n")
    assert load_section(path, "features", Feats).num_mel_bins == 40


def test_shipped_recipe_configs_name_only_known_sections():
    from pathlib import Path

    from asr_kd.config import check_sections, read_yaml_config

    root = Path(__file__).resolve().parents[1] / "recipes"
    configs = sorted(root.glob("*/conf/*.yaml"))
    assert configs
    for path in configs:
        check_sections(read_yaml_config(path), str(path))
