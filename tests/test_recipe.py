"""The synth recipe's stages through the shell script, as a user runs them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from lhotse import CutSet

from asr_kd.cli.main import cli
from asr_kd.stage import read_marker

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "synth" / "run.sh"


def run_recipe(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(RUN), *args], env=env, capture_output=True, text=True, timeout=1800
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole tiny recipe: corpus -> features -> alignment -> tree -> graph -> teachers
    -> ensemble -> student -> decode -> report (stages 0-19)."""
    work = tmp_path_factory.mktemp("tiny")
    res = run_recipe("--config", "tiny", "--work-dir", str(work))
    assert res.returncode == 0, res.stderr[-3000:]
    return work, res


@pytest.mark.slow
def test_tiny_recipe_corpus_to_features(tiny_run):
    work, res = tiny_run
    for split, n in (("train", 100), ("dev", 10), ("test", 10)):
        cuts = CutSet.from_file(work / "data" / "fbank" / f"synth_cuts_{split}.jsonl.gz")
        assert len(cuts) == n
        assert all(c.has_features for c in cuts)
    assert (work / "data" / "mfcc" / "stats" / "global.json").is_file()
    assert all(f"stage {i} took" in res.stdout for i in range(19))
    # A rerun of a finished stage is skipped, not redone.
    again = run_recipe("--config", "tiny", "--work-dir", str(work), "--stage", "2",
                       "--stop-stage", "2")  # fmt: skip
    assert again.returncode == 0
    assert "is finished; skipping" in again.stderr


@pytest.mark.slow
def test_tiny_recipe_lang_alignment_and_senones(tiny_run):
    work, _ = tiny_run
    data, exp = work / "data", work / "exp"
    ppl = json.loads((data / "lm" / "perplexity.json").read_text())
    assert 1 < ppl["ppl"] < 200
    llk = json.loads((exp / "mono" / "log_likelihood.json").read_text())
    assert llk[-1] > llk[0] + 5  # per frame, over the EM iterations
    summary = json.loads((exp / "mono_ali" / "summary.json").read_text())
    # Forced alignments agree with the synthesiser's own word timings.
    assert summary["dev"]["word_boundaries"]["start_within_50ms"] > 0.7
    assert summary["train"]["failed_share"] <= 0.05
    info = json.loads((data / "senones" / "info.json").read_text())
    assert 50 <= info["num_senones"] <= 150
    for split in ("train", "dev", "test"):
        cuts = CutSet.from_file(data / "senones" / f"synth_cuts_{split}.jsonl.gz")
        assert len(cuts) >= 0.95 * {"train": 100}.get(split, 10)
        for cut in cuts:
            senones = cut.load_custom("senones")
            assert senones.shape == (cut.num_frames,)
            assert 0 <= senones.min() and senones.max() < info["num_senones"]
    priors = json.loads((data / "senones" / "priors.json").read_text())
    assert priors["num_senones"] == info["num_senones"]
    assert priors["num_frames"] == info["train"]["frames"]


def _jobs_source(exp: Path, train_jobs: int, jobs: str) -> str:
    """A script that runs ``jobs`` (``bg_job`` lines) through lib.sh's pool and waits."""
    return f"""set -euo pipefail
recipe_dir={ROOT}/recipes/synth
source {ROOT}/recipes/common/lib.sh
exp={exp}; current=17; train_jobs={train_jobs}
mkdir -p "$exp/log"
{jobs}
wait_jobs
echo all finished
"""


def _jobs_script(exp: Path, train_jobs: int, jobs: str) -> subprocess.CompletedProcess:
    """lib.sh's background-job pool on shell commands (no asr-kd)."""
    script = _jobs_source(exp, train_jobs, jobs)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # make test sets it
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_background_trainings_run_one_thread_each_and_report_their_times(tmp_path):
    jobs = "\n".join(f"bg_job m{i} bash -c 'sleep 0.3; echo threads $OMP_NUM_THREADS'"
                      for i in range(3))  # fmt: skip
    res = _jobs_script(tmp_path, 2, jobs)
    assert res.returncode == 0 and "all finished" in res.stdout
    for i in range(3):
        assert f"m{i}: stage 17 took" in res.stdout
        assert "threads 1" in (tmp_path / "log" / f"m{i}.log").read_text()
    # train_jobs 1: in the foreground, the command's own output on the console
    res = _jobs_script(tmp_path, 1, "bg_job m bash -c 'echo threads ${OMP_NUM_THREADS:-all}'")
    assert res.returncode == 0 and "threads all" in res.stdout


def test_a_failed_background_training_fails_the_stage_with_its_log(tmp_path):
    jobs = """bg_job good bash -c 'sleep 0.5; echo fine'
bg_job bad bash -c 'echo "student: the loss is NaN at cut u1" >&2; exit 3'
bg_job third bash -c 'echo ok'"""
    res = _jobs_script(tmp_path, 2, jobs)
    assert res.returncode == 1 and "all finished" not in res.stdout
    assert "the loss is NaN at cut u1" in res.stderr  # the end of the failed job's log
    assert "bad failed" in res.stderr and f"{tmp_path}/log/bad.log" in res.stderr
    assert "good: stage 17 took" in res.stdout and "third: stage 17 took" in res.stdout


def test_ctrl_c_stops_the_background_trainings(tmp_path):
    """Background jobs of a script ignore SIGINT: the recipe itself must stop them."""
    jobs = "\n".join(f"bg_job m{i} bash -c 'echo $$ > {tmp_path}/m{i}.pid; exec sleep 60'"
                      for i in range(2))  # fmt: skip
    script = _jobs_source(tmp_path, 2, jobs)
    # as from a terminal: SIGINT not ignored (a pytest-xdist worker ignores it, and bash
    # cannot trap a signal ignored when it started)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    pid_files = [tmp_path / f"m{i}.pid" for i in range(2)]
    for _ in range(100):
        if all(f.is_file() and f.read_text().strip() for f in pid_files):
            break
        time.sleep(0.05)
    pids = [int(f.read_text()) for f in pid_files]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    for pid in pids:  # the jobs' commands are gone, not left running for a minute
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_stage_without_its_input_fails_with_one_line(tmp_path):
    res = run_recipe("--config", "tiny", "--work-dir", str(tmp_path), "--stage", "1",
                     "--stop-stage", "1")  # fmt: skip
    assert res.returncode != 0
    assert "run the 'synth-corpus' stage first" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_error_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(
        cli, ["compute-features", str(tmp_path / "nope"), str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "asr-kd compute-features: error:" in result.output
    assert "run the 'prepare' stage first" in result.output


def test_cli_rejects_unknown_config_option(tmp_path):
    result = CliRunner().invoke(
        cli, ["synth-corpus", "--set", "speakerz=3", str(tmp_path / "corpus")]
    )
    assert result.exit_code == 1
    assert "unknown option(s) speakerz" in result.output


@pytest.mark.slow
def test_senone_targets_refuse_features_of_another_frame_rate(tiny_run, tmp_path):
    from asr_kd.data.features import FeatureConfig, compute_features
    from asr_kd.errors import BadInputError
    from asr_kd.tree.targets import senone_targets_stage

    work, _ = tiny_run
    fbank = tmp_path / "fbank20ms"
    compute_features(work / "data" / "manifests", fbank, FeatureConfig(frame_shift=0.02))
    with pytest.raises(BadInputError, match=r"cut \S+: the alignment has \d+ frames"):
        senone_targets_stage(work / "exp" / "mono_ali", fbank, work / "exp" / "tree",
                             tmp_path / "senones")  # fmt: skip
    assert not (tmp_path / "senones").exists()


@pytest.mark.slow
def test_tiny_recipe_oracle_decoding_is_near_perfect(tiny_run):
    """Scores from the reference senone alignments decode to the transcripts: graph,
    tree and decoder agree."""
    work, _ = tiny_run
    graph_info = json.loads((work / "exp" / "graph" / "info.json").read_text())
    assert graph_info["states"] > 1000
    for split in ("dev", "test"):
        wer = json.loads((work / "exp" / "oracle" / f"decode_{split}" / "wer.json").read_text())
        assert wer["wer"] <= 2.0, wer["summary"]
        assert wer["words"] > 50 and wer["device"] == "cpu"
        assert (work / "exp" / "oracle" / f"decode_{split}" / "errs.txt").is_file()
    test = json.loads((work / "exp" / "oracle" / "decode_test" / "wer.json").read_text())
    dev = json.loads((work / "exp" / "oracle" / "decode_dev" / "wer.json").read_text())
    assert test["selected_by"] == "given" and test["lm_weight"] == dev["lm_weight"]


@pytest.mark.slow
def test_tiny_recipe_report_has_every_system_with_sane_numbers(tiny_run):
    work, res = tiny_run
    results = json.loads((work / "exp" / "report" / "results.json").read_text())
    systems = results["systems"]
    # tiny's protocol: 10% of the data (3% of 100 utterances would be 3).
    expected = {"baseline", "teacher1", "teacher2", "ensemble", "student", "hard_10pct",
                "soft_10pct"}  # fmt: skip
    assert expected <= set(systems)
    for name in expected:
        entry = systems[name]
        assert entry["params"] > 10_000, name
        for split in ("dev", "test"):
            # 149 senones: chance is well below 5%; three epochs on 100 utterances
            # reach 15-35%.
            assert 5.0 < entry[split]["frame_acc"] < 80.0, (name, split, entry)
            assert 0.0 <= entry[split]["wer"] <= 150.0, (name, split, entry)
    # tiny inherits small's protocol.baseline_in_ensemble: the baseline and two teachers
    assert systems["ensemble"]["params"] == 3 * systems["teacher1"]["params"]
    members = json.loads((work / "exp" / "eval" / "ensemble" / "eval.json").read_text())
    assert list(members["teachers"]) == ["baseline", "teacher1", "teacher2"]
    assert {"frame_acc", "wer", "frame_acc_interval", "reference"} <= set(results["gain_kept"])
    # The protocol's fields: the ensemble against the singles' mean, data fractions (10%
    # and the full set), bootstrap WER intervals around each system's WER.
    assert results["ensemble_gain"]["singles"] == ["baseline", "teacher1", "teacher2"]
    assert [r["fraction"] for r in results["data_fraction"]] == [0.1, 1.0]
    assert results["data_fraction"][0]["hard"]["systems"] == ["hard_10pct"]
    for name in expected - {"ensemble"}:
        low, high = systems[name]["test"]["wer_interval"]
        assert low <= systems[name]["test"]["wer"] <= high, name
    # A data fraction trains as many updates as the full-data model.
    steps = {n: json.loads((work / "exp" / n / "train.json").read_text())["total_steps"]
             for n in ("baseline", "hard_10pct", "soft_10pct")}  # fmt: skip
    assert steps["hard_10pct"] == steps["soft_10pct"] == steps["baseline"], steps
    # tiny teaches its fraction models as converge.yaml: perturbed windows, and the soft
    # model's teachers on the fly (no cache), on the soft targets alone
    soft = read_marker(work / "exp" / "soft_10pct")["config"]
    assert soft["distillation"]["source"] == "on_the_fly", soft["distillation"]
    assert soft["distillation"]["alpha"] == 1.0 and soft["distillation"]["cache_dir"] is None
    # and its student as converge.yaml teaches it (protocol.student_overrides): the
    # teachers on the same perturbed windows, the paper's hard-target weight kept
    student = read_marker(work / "exp" / "student")["config"]["distillation"]
    assert student["source"] == "on_the_fly" and student["cache_dir"] is None, student
    assert student["alpha"] == 0.667, student
    for name in ("hard_10pct", "soft_10pct", "student"):
        train = read_marker(work / "exp" / name)["config"]
        section = train.get("distill", train.get("train"))
        assert section["augment_freq_masks"] == 2 and section["augment_noise"] == 0.3, name
    assert "| student |" in res.stdout  # the run ends by printing the report table
    for png in ("systems.png", "learning_curves.png"):
        assert (work / "exp" / "report" / png).stat().st_size > 1000


@pytest.mark.slow
def test_tiny_recipe_specialists_stages(tiny_run):
    """Stages 19-21: clusters, specialists, their student, decoded and in the report."""
    work, res = tiny_run
    exp = work / "exp"
    assert all(f"stage {i} took" in res.stdout for i in (19, 20, 21))
    clusters = json.loads((exp / "specialists" / "clusters.json").read_text())
    assert clusters["num_clusters"] == len(clusters["clusters"]) == 3  # tiny: 3 specialists
    assert clusters["sizes"] == [len(c) for c in clusters["clusters"]]
    flat = [s for c in clusters["clusters"] for s in c]
    assert len(flat) == len(set(flat))  # disjoint
    systems = json.loads((exp / "report" / "results.json").read_text())["systems"]
    for name in ("generalist", "specialists", "specialists_student"):
        for split in ("dev", "test"):
            entry = systems[name][split]
            assert 5.0 < entry["frame_acc"] < 80.0, (name, split, entry)
            assert 0.0 < entry["frame_acc_in_clusters"] < 100.0, (name, split, entry)
            assert 0.0 <= entry["wer"] <= 150.0, (name, split, entry)
    # The generalist is the baseline: the same model, the same numbers.
    assert systems["generalist"]["dev"]["wer"] == systems["baseline"]["dev"]["wer"]
    assert "frame accuracy, %" in (exp / "report" / "RESULTS.md").read_text()


@pytest.mark.slow
def test_tiny_recipe_baselines_on_every_alignment(tiny_run):
    """--tri2 yes then --realign yes: a baseline on the DNN's, mono's and tri2's alignments
    besides the tri1 targets' own, each decoded, all scored against the stage-9 targets."""
    work, _ = tiny_run
    exp = work / "exp"
    res = run_recipe("--config", "tiny", "--work-dir", str(work), "--stage", "8",
                     "--stop-stage", "12", "--tri2", "yes", "--realign", "yes")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (exp / "tri2_ali" / ".done.json").is_file()
    names = ["baseline_realigned", "baseline_mono", "baseline_tri2"]
    for name in names:
        wer = json.loads((exp / name / "decode_test" / "wer.json").read_text())
        assert 0.0 <= wer["wer"] <= 150.0, name
        assert wer["selected_by"] != "best_on_this_set", name  # test at dev's point
    scores = json.loads((exp / "eval" / "realigned" / "eval.json").read_text())
    assert {"baseline", *names} <= set(scores["teachers"]), scores["teachers"]
    for split in scores["splits"].values():
        for name in ["baseline", *names]:
            assert 0.05 < split["systems"][name]["frame_acc"] < 0.8, (name, split)


@pytest.mark.slow
def test_tiny_recipe_decodes_the_protocols_teachers_only(tiny_run, tmp_path):
    """protocol.decoded_teachers: 1 decodes teacher1 and leaves teacher2 undecoded."""
    work, _ = tiny_run
    exp = work / "exp"
    conf = tmp_path / "one_teacher.yaml"
    tiny = ROOT / "recipes" / "synth" / "conf" / "tiny.yaml"
    conf.write_text(f"parent: {tiny}\nprotocol:\n  decoded_teachers: 1\n")
    aside = tmp_path / "aside"
    moved = {}
    for d in sorted(exp.glob("teacher*/decode_*")):  # as if stage 18 had not run for them
        moved[d] = aside / d.parent.name / d.name
        moved[d].parent.mkdir(parents=True, exist_ok=True)
        d.rename(moved[d])
    try:
        res = run_recipe("--config", str(conf), "--work-dir", str(work), "--stage", "18",
                         "--stop-stage", "18")  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        assert (exp / "teacher1" / "decode_test" / "wer.json").is_file()
        assert (exp / "baseline" / "decode_test" / "wer.json").is_file()
        assert not list((exp / "teacher2").glob("decode_*"))
    finally:  # the other tests' tiny run as it was
        for d, kept in moved.items():
            shutil.rmtree(d, ignore_errors=True)
            kept.rename(d)


@pytest.mark.slow
def test_tiny_recipe_transfer_stages_teach_as_the_student(tiny_run):
    """Stages 25-27 (--transfer yes): the omitted-phone student and the student on the
    untranscribed audio are taught as stage 16's student (protocol.student_overrides:
    the teachers on the fly, no cache), and the report gains both sections. Runs last: it
    rewrites the tiny run's report."""
    work, _ = tiny_run
    exp = work / "exp"
    res = run_recipe("--config", "tiny", "--work-dir", str(work), "--stage", "25",
                     "--stop-stage", "27", "--transfer", "yes")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("omit_student", "student_unlab"):
        config = read_marker(exp / name)["config"]
        assert config["distillation"]["source"] == "on_the_fly", name
        assert config["distillation"]["cache_dir"] is None, name
        assert config["distill"]["augment_noise"] == 0.3, name
    assert read_marker(exp / "omit_student")["config"]["distill"]["omit_phone"]
    assert not (work / "data" / "soft_unlab").exists()  # no cache that nothing reads
    doc = json.loads((exp / "report" / "results.json").read_text())
    assert doc["omitted_phone"]["control"] and doc["unlabelled"]["student"]
