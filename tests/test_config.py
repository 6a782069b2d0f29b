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
