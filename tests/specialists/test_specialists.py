"""Specialists over confusable senone clusters (Hinton et al., 2015, section 5).

Clusters are checked on synthetic predictions with planted confusable groups; the KL
combination against its closed form and a direct minimisation; the stage, the system
and the in-cluster evaluation on the toy senone task of ``tests/train`` with a small
DNN generalist.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import train_toy as toy
from click.testing import CliRunner

from asr_kd.cli.main import cli
from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.models.dnn import DNN
from asr_kd.specialists import (
    CovarianceAccumulator,
    SpecialistConfig,
    dustbin_shift,
    evaluate_in_clusters,
    find_clusters,
    train_specialists,
)
from asr_kd.specialists.train import senone_counts
from asr_kd.stage import read_marker
from asr_kd.teachers import (
    SpecialistSystem,
    active_specialists,
    combine_objective,
    kl_combine,
    make_specialist,
)
from asr_kd.teachers import load as load_teacher
from asr_kd.train import TrainConfig, train_model
from asr_kd.train.dataset import load_split

S = 8
GENERALIST = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 32, "left_context": 1,
                                         "right_context": 1}}  # fmt: skip


def _config(**changes) -> SpecialistConfig:
    base = dict(num_clusters=2, min_cluster_size=2, max_cluster_size=5, cluster_frames=0,
                epochs=1, lr=1e-3, max_duration=3.0, top_n=2, fused="loop")  # fmt: skip
    return SpecialistConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy data, a trained DNN generalist and its specialists (the stage run once)."""
    root = tmp_path_factory.mktemp("spec")
    data, feats = toy.make_toy_data(root / "toy")
    gen = root / "exp" / "generalist"
    train_config = TrainConfig(model=GENERALIST, max_epochs=2, max_duration=3.0, lr=0.1,
                               num_workers=0, log_interval=100, patience=0)  # fmt: skip
    train_model(data, feats, gen, train_config, device="cpu")
    out = root / "exp" / "specialists"
    train_specialists(gen, data, feats, out, _config(), device="cpu")
    return {"root": root, "data": data, "feats": feats, "gen": gen, "out": out}


# -- clusters -----------------------------------------------------------------------


def _planted(groups, mass, frames=4000, seed=0) -> torch.Tensor:
    """``[frames, S]`` distributions: each frame picks a group and puts ``mass[g]`` on
    its members (Dirichlet-spread), the rest uniformly over every senone."""
    rng = np.random.default_rng(seed)
    num = sum(len(g) for g in groups)
    probs = np.full((frames, num), 0.0)
    pick = rng.integers(len(groups), size=frames)
    for n, g in enumerate(pick):
        members = groups[g]
        probs[n, members] = mass[g] * rng.dirichlet(np.ones(len(members)))
        probs[n] += (1 - mass[g]) / num
    return torch.as_tensor(probs)


def _covariance(probs: torch.Tensor, chunk: int = 700) -> CovarianceAccumulator:
    acc = CovarianceAccumulator(probs.shape[1])
    for start in range(0, len(probs), chunk):
        acc.add(probs[start : start + chunk])
    return acc


GROUPS = [[0, 5, 10, 15, 19], [1, 6, 11, 16, 18], [2, 3, 7, 12, 17], [4, 8, 9, 13, 14]]


def test_the_covariance_is_that_of_all_frames_added_in_chunks():
    probs = _planted(GROUPS, [0.9] * 4, frames=1000)
    acc = _covariance(probs, chunk=333)
    want = np.cov(probs.numpy(), rowvar=False, bias=True)
    assert acc.frames == 1000
    np.testing.assert_allclose(acc.covariance().numpy(), want, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[N, 20\]"):
        acc.add(torch.ones(3, 19) / 19)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clusters_are_the_planted_confusable_groups(seed):
    acc = _covariance(_planted(GROUPS, [0.9] * 4, seed=seed))
    result = find_clusters(acc.covariance(), num_clusters=4, min_size=2, max_size=10,
                           seed=seed, frames=acc.frames)  # fmt: skip
    assert sorted(map(sorted, result.clusters)) == sorted(map(sorted, GROUPS))
    doc = result.to_dict()
    assert doc["num_clusters"] == 4 and doc["covered_senones"] == 20 and doc["frames"] == 4000
    assert all(m > 0 for m in result.confusion)


def test_max_cluster_size_caps_every_cluster():
    acc = _covariance(_planted(GROUPS, [0.9] * 4))
    result = find_clusters(acc.covariance(), num_clusters=4, min_size=1, max_size=3)
    assert sorted(len(c) for c in result.clusters) == [3, 3, 3, 3]  # 20 senones, 12 places
    members = [s for c in result.clusters for s in c]
    assert len(members) == len(set(members))  # disjoint


def test_min_cluster_size_drops_small_clusters():
    groups = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16]]
    acc = _covariance(_planted(groups, [0.9] * 4))
    kept = find_clusters(acc.covariance(), num_clusters=4, min_size=3, max_size=10)
    assert sorted(kept.clusters) == groups[:3]
    every = find_clusters(acc.covariance(), num_clusters=4, min_size=2, max_size=10)
    assert sorted(every.clusters) == groups


def test_num_specialists_keeps_the_most_confused_clusters():
    # The more mass a group's frames spread among its members, the more confused it is.
    acc = _covariance(_planted(GROUPS, [0.5, 0.9, 0.3, 0.7]))
    result = find_clusters(acc.covariance(), num_clusters=4, min_size=2, max_size=10,
                           num_specialists=2)  # fmt: skip
    assert [sorted(c) for c in result.clusters] == [GROUPS[1], GROUPS[3]]
    assert result.confusion[0] > result.confusion[1] > 0


# -- the KL combination -------------------------------------------------------------


def _random_dist(rng, n, k) -> torch.Tensor:
    return torch.as_tensor(rng.dirichlet(np.ones(k) * 0.7, size=n), dtype=torch.float32)


def test_one_specialist_combines_to_the_closed_form():
    rng = np.random.default_rng(0)
    n, num = 6, 10
    cluster = torch.tensor([2, 5, 7])
    p_g, p_1 = _random_dist(rng, n, num).double(), _random_dist(rng, n, 4).double()
    q = kl_combine(p_g.float(), [p_1.float()], [cluster], torch.ones(n, 1, dtype=torch.bool))

    inside = torch.zeros(num, dtype=torch.bool)
    inside[cluster] = True
    a = p_g[:, inside].sum(1, keepdim=True) + p_1[:, 1:].sum(1, keepdim=True)
    b = 1 - p_g[:, inside].sum(1, keepdim=True)
    want = p_g * (1 - a / 2) / b
    want[:, cluster] = (p_g[:, cluster] + p_1[:, 1:]) / 2
    assert q.dtype == torch.float32 and q.shape == (n, num)
    np.testing.assert_allclose(q.double().numpy(), want.numpy(), atol=2e-6)


@pytest.mark.parametrize("w", [0.25, 0.5, 2.0])
def test_a_weighted_specialist_combines_to_the_weighted_closed_form(w):
    """KL(p_g||q) + w KL(p_1||q_1): inside the cluster (p_g + w p_1) / (1 + w), outside
    p_g scaled to the rest of the mass."""
    rng = np.random.default_rng(1)
    n, num = 6, 10
    cluster = torch.tensor([1, 4, 8])
    p_g, p_1 = _random_dist(rng, n, num).double(), _random_dist(rng, n, 4).double()
    q = kl_combine(p_g, [p_1], [cluster], torch.ones(n, 1, dtype=torch.bool), 200, 1e-12, w)
    inside = torch.zeros(num, dtype=torch.bool)
    inside[cluster] = True
    mass = (p_g[:, inside].sum(1, keepdim=True) + w * p_1[:, 1:].sum(1, keepdim=True)) / (1 + w)
    want = p_g * (1 - mass) / (1 - p_g[:, inside].sum(1, keepdim=True))
    want[:, cluster] = (p_g[:, cluster] + w * p_1[:, 1:]) / (1 + w)
    np.testing.assert_allclose(q.double().numpy(), want.numpy(), atol=2e-6)


def _brute_force(p_g, spec, clusters, active, steps=400) -> torch.Tensor:
    """The minimiser of :func:`combine_objective` by L-BFGS over the logits of ``q``."""
    z = p_g.double().clamp(min=1e-12).log().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=steps, tolerance_grad=1e-14,
                            tolerance_change=1e-16, history_size=50,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = combine_objective(z.softmax(-1), p_g, spec, clusters, active).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return z.detach().softmax(-1)


@pytest.mark.parametrize(
    "clusters", [[[0, 1, 2], [5, 6]], [[0, 1, 2], [2, 3, 4, 8]]], ids=["disjoint", "overlapping"]
)
def test_two_specialists_combine_to_the_minimum_of_the_objective(clusters):
    rng = np.random.default_rng(1)
    n, num = 8, 9
    clusters = [torch.tensor(c) for c in clusters]
    p_g = _random_dist(rng, n, num)
    spec = [_random_dist(rng, n, len(c) + 1) for c in clusters]
    active = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1], [1, 0], [0, 0]],
                          dtype=torch.bool)  # fmt: skip
    q = kl_combine(p_g, spec, clusters, active)
    best = _brute_force(p_g, spec, clusters, active)
    ours = combine_objective(q, p_g, spec, clusters, active)
    theirs = combine_objective(best, p_g, spec, clusters, active)
    assert (ours <= theirs + 1e-6).all(), (ours - theirs).max()
    np.testing.assert_allclose(q.double().numpy(), best.numpy(), atol=1e-4)
    np.testing.assert_allclose(q.sum(-1).numpy(), 1.0, atol=1e-6)
    idle = ~active.any(1)
    assert torch.equal(q[idle], p_g[idle])  # no specialist: the generalist, exactly
    assert not torch.allclose(q[~idle], p_g[~idle], atol=1e-3)


def test_no_specialists_or_none_active_keep_the_generalist():
    rng = np.random.default_rng(2)
    p_g = _random_dist(rng, 4, 6)
    assert torch.equal(kl_combine(p_g, [], [], torch.zeros(4, 0, dtype=torch.bool)), p_g)
    spec = [_random_dist(rng, 4, 3)]
    q = kl_combine(p_g, spec, [torch.tensor([1, 4])], torch.zeros(4, 1, dtype=torch.bool))
    assert torch.equal(q, p_g)


def test_a_specialist_is_active_when_the_generalists_top_n_hits_its_cluster():
    cluster_of = torch.tensor([-1, 0, 0, 1, 1, -1])  # senones 1, 2: specialist 0; 3, 4: 1
    probs = torch.tensor([
        [0.40, 0.05, 0.05, 0.05, 0.05, 0.40],  # top 2: {0, 5}: no specialist
        [0.30, 0.40, 0.05, 0.05, 0.05, 0.15],  # {1, 0}: specialist 0
        [0.05, 0.05, 0.40, 0.30, 0.05, 0.15],  # {2, 3}: both
        [0.05, 0.05, 0.05, 0.05, 0.40, 0.40],  # {4, 5}: specialist 1
    ])  # fmt: skip
    active = active_specialists(probs, cluster_of, num_specialists=2, top_n=2)
    want = [[False, False], [True, False], [True, True], [False, True]]
    assert active.tolist() == want
    top1 = active_specialists(probs, cluster_of, num_specialists=2, top_n=1)
    assert top1[:, 0].tolist() == [False, True, True, False]
    assert active_specialists(probs, cluster_of, 2, top_n=10).all()  # top_n > S: all senones


# -- specialist heads and the dustbin ------------------------------------------------


def test_the_dustbin_shift_undoes_the_oversampling_of_the_cluster():
    keep, shift = dustbin_shift(100, 900, 0.5)
    assert keep == pytest.approx(1 / 9) and shift == pytest.approx(math.log(9))
    keep, shift = dustbin_shift(100, 900, 0.25)  # 100 in, 300 of 900 kept
    assert keep == pytest.approx(1 / 3) and shift == pytest.approx(math.log(3))
    assert dustbin_shift(600, 400, 0.5) == (1.0, 0.0)  # common already: keep every frame
    assert dustbin_shift(0, 400, 0.5) == (1.0, 0.0)
    with pytest.raises(ValueError, match="in_share"):
        dustbin_shift(100, 900, 1.0)


def test_a_new_specialist_starts_as_the_generalist_restricted_to_its_cluster():
    torch.manual_seed(0)
    gen = DNN(feat_dim=4, num_senones=S, num_layers=1, hidden_dim=16, left_context=1,
              right_context=1).eval()  # fmt: skip
    cluster = [6, 1, 3]
    others = [s for s in range(S) if s not in cluster]
    spec = make_specialist(gen, S, cluster).eval()
    feats, lengths = torch.randn(2, 7, 4), torch.tensor([7, 5])
    hidden = []
    gen.output.register_forward_hook(lambda m, args, out: hidden.append(args[0]))
    with torch.no_grad():
        z_g, _ = gen(feats, lengths)
        z_m, out_lengths = spec(feats, lengths)
    assert z_m.shape == (2, 7, 4) and out_lengths.tolist() == [7, 5]
    assert gen.output.out_features == S  # the generalist is left as it was
    torch.testing.assert_close(z_m[..., 1:], z_g[..., cluster])
    w, b = gen.output.weight.detach(), gen.output.bias.detach()
    dust = hidden[0] @ w[others].mean(0) + b[others].mean() + math.log(len(others))
    torch.testing.assert_close(z_m[..., 0], dust)

    # Equal logits outside the cluster: the dustbin gets exactly their softmax mass.
    with torch.no_grad():
        gen.output.weight[others] = w[others[0]].clone()
        gen.output.bias[others] = 0.3
        z_g, _ = gen(feats, lengths)
        z_m, _ = make_specialist(gen, S, cluster).eval()(feats, lengths)
    p_g, p_m = z_g.softmax(-1), z_m.softmax(-1)
    torch.testing.assert_close(p_m[..., 0], p_g[..., others].sum(-1))
    torch.testing.assert_close(p_m[..., 1:], p_g[..., cluster])


# -- the stage on the toy task ------------------------------------------------------


def test_the_stage_writes_specialists_and_skips_a_rerun(world):
    out = world["out"]
    assert {p.name for p in out.iterdir()} >= {
        "clusters.json", "specialists.json", "train.json", ".done.json", "specialist0.pt",
    }  # fmt: skip
    found = json.loads((out / "clusters.json").read_text())
    clusters = found["clusters"]
    train_frames = sum(c.num_frames for c in load_split(world["data"], "train"))
    assert found["frames"] == train_frames  # cluster_frames=0: every training frame
    assert 1 <= len(clusters) <= 2
    assert all(2 <= len(c) <= 5 for c in clusters)
    members = [s for c in clusters for s in c]
    assert len(members) == len(set(members)) and all(0 <= s < S for s in members)
    info = json.loads((out / "specialists.json").read_text())
    assert info["num_senones"] == S and info["tree_id"] == "toytree00000000"
    assert [e["file"] for e in info["specialists"]] == [
        f"specialist{i}.pt" for i in range(len(clusters))
    ]
    counts = senone_counts(load_split(world["data"], "train"), S)
    for entry, cluster in zip(info["specialists"], clusters, strict=True):
        inside = int(counts[cluster].sum())
        keep, shift = dustbin_shift(inside, int(counts.sum()) - inside, 0.5)
        assert entry["keep_rate"] == pytest.approx(keep) and entry["size"] == len(cluster)
        assert entry["dustbin_shift"] == pytest.approx(shift)
        assert 0 <= entry["dev"]["balanced"] <= 1
        saved = torch.load(out / entry["file"], weights_only=True)
        assert saved["cluster"] == cluster
        assert saved["state_dict"]["output.weight"].shape[0] == len(cluster) + 1

    marker = (out / ".done.json").read_text()
    stamp = (out / "specialist0.pt").stat().st_mtime_ns
    train_specialists(world["gen"], world["data"], world["feats"], out, _config(), device="cpu")
    assert (out / ".done.json").read_text() == marker
    assert (out / "specialist0.pt").stat().st_mtime_ns == stamp


def test_the_specialist_system_is_a_teacher_of_distributions(world):
    system = load_teacher(world["out"], "toytree00000000", S, device="cpu")
    assert isinstance(system, SpecialistSystem)
    generalist = load_teacher(world["gen"], device="cpu")
    cuts = list(load_split(world["data"], "dev"))[:3]
    log_probs, lengths = system.log_probs_batch(cuts)
    assert lengths.tolist() == [c.num_frames for c in cuts]
    assert log_probs.shape == (3, int(lengths.max()), S)
    probs, gen, active, _ = system.posteriors_batch(cuts)
    gen_lp, _ = generalist.log_probs_batch(cuts)
    for i, n in enumerate(lengths.tolist()):
        np.testing.assert_allclose(log_probs[i, :n].exp().sum(-1).numpy(), 1.0, atol=1e-5)
        torch.testing.assert_close(gen[i, :n], gen_lp[i, :n].exp())
        idle = ~active[i, :n].any(-1)
        assert torch.equal(probs[i, :n][idle], gen[i, :n][idle])
    assert active.any()  # some frames use a specialist, and they change the distribution
    assert not torch.allclose(probs[active.any(-1)], gen[active.any(-1)], atol=1e-4)


def test_eval_specialists_scores_frames_inside_the_clusters(world, tmp_path):
    out_file = tmp_path / "eval.json"
    doc = evaluate_in_clusters(world["out"], world["data"], splits=("dev",), out_file=out_file,
                               device="cpu")  # fmt: skip
    assert json.loads(out_file.read_text()) == json.loads(json.dumps(doc))
    clusters = json.loads((world["out"] / "clusters.json").read_text())["clusters"]
    in_cluster = {s for c in clusters for s in c}
    cuts = load_split(world["data"], "dev")
    targets = np.concatenate([c.load_custom("senones") for c in cuts])
    assert doc["clusters"] == len(clusters) and doc["covered_senones"] == len(in_cluster)
    for name in ("generalist", "specialists"):
        result = doc["systems"][name]["dev"]
        assert result["frames"] == len(targets)
        assert result["frames_in_clusters"] == int(np.isin(targets, list(in_cluster)).sum())
        assert 1 / S < result["frame_acc"] <= 1  # trained: above chance
        assert 0 <= result["frame_acc_in_clusters"] <= 1
    assert 0 < doc["systems"]["specialists"]["dev"]["active_share"] <= 1
    assert doc["dev"] == {k: doc["systems"]["specialists"]["dev"][k]
                          for k in ("frame_acc", "frame_acc_in_clusters")}  # fmt: skip
    assert doc["systems"]["generalist"]["dir"] == str(world["gen"])


def test_the_command_trains_from_given_clusters_and_bakes_in_the_dustbin_shift(world, tmp_path):
    # lr=0: the specialists keep their initial weights, so the saved dustbin bias is the
    # initial one plus the shift, exactly.
    out = tmp_path / "spec_cli"
    clusters = [[0, 1], [4, 6, 5]]  # rarer than in_cluster_share: oversampled
    clusters_file = tmp_path / "clusters.json"
    clusters_file.write_text(json.dumps({"clusters": clusters}))
    args = ["train-specialists", str(world["gen"]), str(world["data"]), str(world["feats"]),
            str(out), "--clusters", str(clusters_file), "--device", "cpu", "--set", "lr=0.0",
            "--set", "epochs=1", "--set", "max_duration=3.0", "--set", "fused=loop"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert read_marker(out)["config"]["specialists"]["lr"] == 0.0
    assert json.loads((out / "clusters.json").read_text())["clusters"] == clusters
    generalist = load_teacher(world["gen"], device="cpu").model
    info = json.loads((out / "specialists.json").read_text())
    for entry, cluster in zip(info["specialists"], clusters, strict=True):
        saved = torch.load(out / entry["file"], weights_only=True)
        initial = make_specialist(generalist, S, cluster).state_dict()
        assert entry["dustbin_shift"] > 0
        torch.testing.assert_close(saved["state_dict"]["output.weight"], initial["output.weight"])
        bias, want = saved["state_dict"]["output.bias"], initial["output.bias"]
        torch.testing.assert_close(bias[1:], want[1:])
        assert float(bias[0]) == pytest.approx(float(want[0]) + entry["dustbin_shift"], abs=1e-5)
        assert saved["dustbin_shift"] == entry["dustbin_shift"]


# -- bad inputs ---------------------------------------------------------------------


def test_clusters_for_another_inventory_are_refused(world, tmp_path):
    bad = tmp_path / "clusters.json"
    bad.write_text(json.dumps({"clusters": [[0, 1], [2, S + 3]]}))
    out = tmp_path / "spec"
    with pytest.raises(BadInputError, match=str(bad)):
        train_specialists(world["gen"], world["data"], world["feats"], out, _config(),
                          clusters_file=bad, device="cpu")  # fmt: skip
    assert not out.exists()
    args = ["train-specialists", str(world["gen"]), str(world["data"]), str(world["feats"]),
            str(out), "--clusters", str(bad), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and str(bad) in result.output and "another tree" in result.output


@pytest.mark.parametrize("changes", [{"tree_id": "othertree0000000"}, {"num_senones": 6}])
def test_a_generalist_for_another_tree_is_refused(world, tmp_path, changes):
    data, feats = toy.make_toy_data(tmp_path / "other", num_train=2, num_dev=1, **changes)
    out = tmp_path / "spec"
    with pytest.raises(BadInputError, match="same tree"):
        train_specialists(world["gen"], data, feats, out, _config(), device="cpu")
    assert not out.exists()


def test_missing_senone_targets_name_the_stage(world, tmp_path):
    with pytest.raises(MissingInputError, match="senone-targets"):
        train_specialists(world["gen"], tmp_path / "nope", world["feats"], tmp_path / "spec",
                          _config(), device="cpu")  # fmt: skip


def test_batched_and_one_by_one_training_give_the_same_specialists(world, tmp_path):
    """fused: vmap (the GPU's one batched program, run here on the CPU) trains the same
    specialists as the loop, up to float rounding; two CPU processes as one."""
    outs = {}
    for name, fused, jobs in (("vmap", "vmap", 1), ("loop", "loop", 1), ("jobs", "loop", 2)):
        outs[name] = tmp_path / name
        train_specialists(world["gen"], world["data"], world["feats"], outs[name],
                          _config(fused=fused), num_jobs=jobs, device="cpu")  # fmt: skip
    files = sorted(p.name for p in outs["loop"].glob("specialist*.pt"))
    assert len(files) == 2
    for f in files:
        ref = torch.load(outs["loop"] / f, weights_only=True)
        for other in ("vmap", "jobs"):
            got = torch.load(outs[other] / f, weights_only=True)
            assert got["cluster"] == ref["cluster"]
            for key, value in ref["state_dict"].items():
                torch.testing.assert_close(got["state_dict"][key], value, rtol=1e-4, atol=1e-5)
    info = json.loads((outs["vmap"] / "specialists.json").read_text())
    assert info["fused"] == "vmap"


def test_a_killed_specialist_training_resumes_to_the_same_specialists(world, tmp_path):
    """The specialists train on the one trainer: a killed run resumes from its last
    checkpoint (weights, optimisers, frame-selection streams) to the same specialists."""
    config = _config(epochs=2)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_specialists(world["gen"], world["data"], world["feats"], whole, config, device="cpu")

    def kill(step, info):
        if info["epoch"] == 2:
            raise toy.Kill(f"killed at step {step}")

    with pytest.raises(toy.Kill):
        train_specialists(world["gen"], world["data"], world["feats"], parts, config,
                          device="cpu", callbacks=[kill])  # fmt: skip
    assert not parts.exists()
    assert (tmp_path / "parts.job1of1.work" / "checkpoints" / "epoch-1.pt").is_file()
    train_specialists(world["gen"], world["data"], world["feats"], parts, config, device="cpu")
    assert not (tmp_path / "parts.job1of1.work").exists()
    log = (parts / "log" / "job1of1" / "train.log").read_text()
    assert "resumed from epoch-1.pt" in log
    assert list((parts / "log" / "job1of1" / "tensorboard" / "specialist0").iterdir())
    files = sorted(p.name for p in whole.glob("specialist*.pt"))
    assert len(files) == 2
    for f in files:
        a, b = (torch.load(d / f, weights_only=True) for d in (whole, parts))
        assert toy.state_dicts_equal(a["state_dict"], b["state_dict"])
    history = json.loads((parts / "train.json").read_text())["specialists"]["specialist0"]
    assert [e["epoch"] for e in history] == [1, 2]
    assert all(0 < e["train_in_cluster"] <= 1 and e["dev_ce"] > 0 for e in history)
