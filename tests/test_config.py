import json
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


# ---------------------------------------------------------------------------
# One rule for --set in every command: key=value sets the command's own section,
# section.key=value a section it reads; naming a section it does not read is refused.

# command line (inputs need not exist: the config is read first) -> own section, other
# section it reads (or None)
COMMANDS = {
    "synth-corpus OUT": ("corpus", None),
    "compute-features M OUT": ("features", None),
    "compute-features --section mfcc M OUT": ("mfcc", None),
    "train-mono F L OUT": ("mono", None),
    "train-tri --section tri1 A F L T OUT": ("tri1", None),
    "build-tree A F L OUT": ("tree", None),
    "make-graph L LM T OUT": ("graph", None),
    "train-lm TXT L OUT": ("lm", None),
    "decode --oracle S C G OUT": ("decode", None),
    "adjust-priors --model M --priors S C OUT": ("decode", None),
    "train D F OUT": ("train", None),
    "train --section teacher D F OUT": ("teacher", None),
    "train --section hard_3pct D F OUT": ("hard_3pct", None),
    "train-ensemble D F OUT": ("teacher", "ensemble"),
    "cache-soft-targets D F OUT": ("distill", None),
    "distill D F OUT": ("distill", "student"),
    "distill --train-section student_3pct D F OUT": ("distill", "student_3pct"),
    "train-specialists B S F OUT": ("specialists", None),
    "protocol student_seeds": ("protocol", None),
}


def invoke(tmp_path, command: str, *sets: str) -> str:
    from click.testing import CliRunner

    from asr_kd.cli.main import cli

    (tmp_path / "TXT").write_text("A B\n")  # train-lm's text must exist
    words = [str(tmp_path / w) if w.isupper() and len(w) <= 3 else w for w in command.split()]
    args = [words[0], *[a for s in sets for a in ("--set", s)], *words[1:]]
    result = CliRunner().invoke(cli, args)
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_follows_the_one_set_rule(tmp_path, command):
    own, other = COMMANDS[command]
    # key=value and own.key=value both reach the command's own section
    for override in ("no_such_key=1", f"{own}.no_such_key=1"):
        out = invoke(tmp_path, command, override)
        assert f"[{own}]: unknown option(s) no_such_key" in out, out
    if other is not None:  # a second section it reads: section.key=value reaches it
        out = invoke(tmp_path, command, f"{other}.no_such_key=1")
        assert f"[{other}]: unknown option(s) no_such_key" in out, out
    # a section it does not read: refused instead of silently ignored
    out = invoke(tmp_path, command, "specialists.num_clusters=3" if own != "specialists"
                 else "tree.max_leaves=3")  # fmt: skip
    assert "this command reads section(s)" in out and "would have no effect" in out, out


def test_train_lm_order_comes_from_the_config(tmp_path):
    from click.testing import CliRunner

    from asr_kd.cli.main import cli
    from asr_kd.lang import prepare_lang

    prepare_lang("THE CAT SAT ON A MAT".split(), tmp_path / "lang")
    (tmp_path / "lm.txt").write_text("THE CAT SAT\nTHE CAT SAT ON A MAT\nA CAT SAT\n" * 3)
    (tmp_path / "c.yaml").write_text("lm:\n  order: 2\n")
    for name, extra in (("config", []), ("set", ["--set", "order=1"]), ("opt", ["--order", "1"])):
        args = ["train-lm", "--config", str(tmp_path / "c.yaml"), *extra, str(tmp_path / "lm.txt"),
                str(tmp_path / "lang"), str(tmp_path / name)]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    order = {n: json.loads((tmp_path / n / "perplexity.json").read_text())["order"]
             for n in ("config", "set", "opt")}  # fmt: skip
    assert order == {"config": 2, "set": 1, "opt": 1}
