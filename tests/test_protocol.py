"""The recipe's protocol section: names, values for the shell, refusals."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from asr_kd.cli.main import cli
from asr_kd.config import load_section
from asr_kd.errors import ConfigError
from asr_kd.protocol import ProtocolConfig, fraction_tag, system_name


def test_system_names():
    assert fraction_tag(0.03) == "3pct" and fraction_tag(0.1) == "10pct"
    assert fraction_tag(0.005) == "0.5pct"
    assert system_name("student") == "student" and system_name("student", None, 1) == "student_s1"
    assert system_name("hard", 0.03) == "hard_3pct"
    assert system_name("soft", 0.3, 2) == "soft_30pct_s2"


def test_values_for_the_shell():
    p = ProtocolConfig(student_seeds=(0, 1), fractions=(0.03, 0.1), specialists=True)
    assert p.value("student_seeds") == "0 1" and p.value("fractions") == "0.03 0.1"
    assert p.value("specialists") == "yes" and p.value("sweeps") == "no"
    assert p.soft_fraction_options() == []  # the recipe then keeps the student's distill
    assert p.soft_fraction_source == "cache"
    assert p.value("decoded_teachers") == ""  # the recipe then decodes every teacher
    assert ProtocolConfig(decoded_teachers=1).value("decoded_teachers") == "1"
    assert p.value("extra_set_systems") == "baseline ensemble student"
    assert p.value("baseline_in_ensemble") == "no"
    with pytest.raises(KeyError, match="known: student_seeds"):
        p.value("students")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"fractions": [1.0]}, "fractions must lie in"),
        ({"student_seeds": [0, 0]}, "distinct"),
        ({"decode_fractions": [0.1]}, "not among fractions"),
        ({"soft_fraction_distill": {"alpha": 1.5}}, r"soft_fraction_distill.alpha must be in"),
        ({"soft_fraction_distill": {"source": "disk"}}, "must be cache or on_the_fly"),
        ({"soft_fraction_distill": {"cache_dir": "x"}}, "sets no cache_dir"),
        ({"soft_fraction_distill": {"teachers": ["a b"]}}, "holds a space"),
        ({"soft_fraction_distill": [1.0]}, "soft_fraction_distill must be a mapping"),
        ({"student_overrides": {"teacher": {"seed": 1}}}, "sections distill and student"),
        ({"student_overrides": {"distill": {"alpha": -1}}}, r"overrides.distill.alpha must"),
        ({"student_overrides": {"distill": {"cache_dir": "x"}}}, "sets no cache_dir"),
        ({"student_overrides": {"student": [2]}}, "student_overrides.student must map"),
        ({"student_overrides": {"student": {"seed": 3}}}, "sets seed, which protocol.student"),
        ({"student_overrides": {"distill": {"teachers": ["t"]}}}, "sets teachers, which"),
        # cached targets are of unperturbed windows: perturbing only the student is refused
        ({"student_overrides": {"student": {"augment_noise": 0.3}}}, "augment_noise: the cached"),
        ({"decoded_teachers": -1}, "decoded_teachers must be >= 0"),
        ({"extra_set_systems": ["baseline", "hard_3pct"]}, "extra_set_systems must be"),
        ({"extra_set_systems": ["student", "student"]}, "extra_set_systems must be"),
        ({"seeded_fractions": [0.5]}, "seeded_fractions .* not among fractions"),
        ({"fractions": ["three"]}, "fractions must be"),
        ({"decode_overrides": {"hard_*": [1]}}, r"decode_overrides\['hard_\*'\] must map"),
        ({"decode_overrides": {"x": {"device": "a b"}}}, "holds a space"),
        ({"decode_overrides": ["hard_*"]}, "decode_overrides must be a mapping"),
    ],
)
def test_bad_protocols_are_refused(tmp_path, values, message):
    import yaml

    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"protocol": values}))
    with pytest.raises(ConfigError, match=message):
        load_section(conf, "protocol", ProtocolConfig)


@pytest.mark.parametrize("name", ["small", "tiny", "large", "converge"])
def test_every_recipe_config_has_a_valid_protocol(name):
    from pathlib import Path

    conf = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "conf" / f"{name}.yaml"
    p = load_section(conf, "protocol", ProtocolConfig)
    assert p.student_seeds and p.fractions


def test_seeded_fractions_get_every_subset_seed_the_others_the_first():
    p = ProtocolConfig(fractions=(0.03, 0.1, 0.3), subset_seeds=(0, 1), seeded_fractions=(0.03,))
    assert p.seeds_for(0.03) == (0, 1) and p.seeds_for(0.1) == (0,) and p.seeds_for(0.3) == (0,)
    assert ProtocolConfig(fractions=(0.03, 0.1), subset_seeds=(0, 1)).seeds_for(0.1) == (0, 1)
    with pytest.raises(KeyError, match="not among protocol.fractions"):
        p.seeds_for(0.5)


def test_cli_prints_values_and_names(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("protocol:\n  student_seeds: [0, 3]\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["protocol", "--config", str(conf), "student_seeds"])
    assert res.exit_code == 0 and res.output.splitlines()[-1] == "0 3"
    res = runner.invoke(cli, ["protocol", "system:hard:0.1:1"])
    assert res.output.splitlines()[-1] == "hard_10pct_s1"
    conf.write_text(
        "protocol:\n  fractions: [0.03, 0.1]\n  subset_seeds: [0, 1]\n  seeded_fractions: [0.03]\n"
    )
    res = runner.invoke(cli, ["protocol", "--config", str(conf), "subset_seeds:0.1"])
    assert res.exit_code == 0 and res.output.splitlines()[-1] == "0"
    res = runner.invoke(cli, ["protocol", "--config", str(conf), "subset_seeds:0.03"])
    assert res.output.splitlines()[-1] == "0 1"
    res = runner.invoke(cli, ["protocol", "--config", str(conf), "subset_seeds:0.5"])
    assert res.exit_code != 0 and "not among protocol.fractions" in res.output
    res = runner.invoke(cli, ["protocol", "--config", str(conf), "nope"])
    assert res.exit_code != 0 and "protocol has no 'nope'" in res.output


def test_decode_options_per_system_as_decode_reads_them(tmp_path):
    from asr_kd.config import apply_overrides

    conf = tmp_path / "c.yaml"
    conf.write_text(
        "protocol:\n  decode_overrides:\n"
        "    'hard_*pct*': {lattice: false, max_active: 2000}\n"
        "    '*_s1': {lm_weights: [6, 8], device: cpu}\n"
    )
    p = load_section(conf, "protocol", ProtocolConfig)
    assert p.decode_options("student") == []
    assert p.decode_options("hard_3pct") == ["--set", "lattice=false", "--set", "max_active=2000"]
    both = p.decode_options("hard_3pct_s1")
    assert both[4:] == ["--set", "lm_weights=[6,8]", "--set", 'device="cpu"']
    # decode reads them back as the values written
    decode = apply_overrides({}, both[1::2], "decode")["decode"]
    assert decode == {"lattice": False, "max_active": 2000, "lm_weights": [6, 8], "device": "cpu"}
    res = CliRunner().invoke(
        cli, ["protocol", "--config", str(conf), "decode_options:soft_3pct_s1"]
    )
    assert res.exit_code == 0
    assert res.output.splitlines()[-1] == '--set lm_weights=[6,8] --set device="cpu"'
    # the recipe configs: the weak data-fraction models get the 1-best decoder
    small = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "conf" / "small.yaml"
    p = load_section(small, "protocol", ProtocolConfig)
    assert "lattice=false" in p.decode_options("soft_3pct") and not p.decode_options("baseline")


@pytest.mark.parametrize(
    "yaml_text, key, expected",
    [
        (
            "soft_fraction_distill: {alpha: 1.0, source: on_the_fly}",
            "soft_fraction",
            ["--set", "distill.alpha=1.0", "--set", 'distill.source="on_the_fly"'],
        ),
        (
            "student_overrides: {distill: {source: on_the_fly}, student: {augment_noise: 0.3}}",
            "student",
            ["--set", 'distill.source="on_the_fly"', "--set", "student.augment_noise=0.3"],
        ),
    ],
)
def test_distill_settings_as_distill_reads_them(tmp_path, yaml_text, key, expected):
    """The soft fraction models' and the students' --set arguments give distill the
    protocol's settings, and the recipe learns whether they read the cache (consistent
    teaching: not)."""
    from asr_kd.config import apply_overrides
    from asr_kd.distill.train import DistillConfig

    conf = tmp_path / "c.yaml"
    conf.write_text(f"protocol:\n  {yaml_text}\n")
    p = load_section(conf, "protocol", ProtocolConfig)
    args = getattr(p, f"{key}_options")()
    assert args == expected
    sections = {"distill": {"alpha": 0.667, "k": 64}, "student": {"augment_noise": 0.0}}
    read = apply_overrides(sections, args[1::2], "distill")
    config = DistillConfig(**read["distill"], teachers=("t",))
    assert (config.source, config.k) == ("on_the_fly", 64)
    assert config.alpha == (1.0 if key == "soft_fraction" else 0.667)
    assert read["student"]["augment_noise"] == (0.3 if key == "student" else 0.0)
    runner = CliRunner()
    res = runner.invoke(cli, ["protocol", "--config", str(conf), f"{key}_source"])
    assert res.exit_code == 0 and res.output.splitlines()[-1] == "on_the_fly"
    res = runner.invoke(cli, ["protocol", "--config", str(conf), f"{key}_options"])
    assert res.output.splitlines()[-1] == " ".join(args)


def test_recipe_configs_teach_consistently():
    """converge.yaml (make experiment) teaches its soft fraction models and its students
    consistently; small.yaml (make demo) reads the cache."""
    conf = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "conf"
    converge = load_section(conf / "converge.yaml", "protocol", ProtocolConfig)
    assert converge.soft_fraction_source == converge.student_source == "on_the_fly"
    assert "student.augment_noise=0.3" in converge.student_options()
    small = load_section(conf / "small.yaml", "protocol", ProtocolConfig)
    assert small.soft_fraction_source == small.student_source == "cache"
    assert small.student_options() == []
