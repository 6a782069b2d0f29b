"""Data-parallel training: two CPU ranks (gloo) against one process with accum_grad=2."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp
from train_toy import toy_builder

from asr_kd.train import TrainConfig, train_model
from asr_kd.train.checkpoint import load_file
from asr_kd.train.dataset import EpochBatches, load_split, make_sampler


def _config(**changes) -> TrainConfig:
    base = dict(
        model={"arch": "toy", "options": {"hidden": 32}},
        max_steps=3, max_duration=3.0, lr=0.1, num_workers=0, log_interval=1,
    )  # fmt: skip
    return TrainConfig(**{**base, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank: int, world_size: int, port: int, args: tuple) -> None:
    """One process of the training (spawned: a fresh interpreter)."""
    if world_size > 1:
        os.environ.update(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        )  # fmt: skip
    torch.set_num_threads(1)  # same kernels, same summation order in every process
    data_dir, feature_dir, out, config = args
    train_model(data_dir, feature_dir, out, config, device="cpu", builder=toy_builder)


def test_two_ranks_equal_one_process_accumulating_their_batches(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    args = (data_dir, feature_dir, ddp, _config())
    mp.spawn(_run, args=(2, _free_port(), args), nprocs=2, join=True)
    args = (data_dir, feature_dir, single, _config(accum_grad=2))
    mp.spawn(_run, args=(1, 0, args), nprocs=1, join=True)

    a, b = load_file(ddp / "model.pt")["state_dict"], load_file(single / "model.pt")["state_dict"]
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise: see the loop's docstring
    da, db = (json.loads((d / "train.json").read_text()) for d in (ddp, single))
    assert da["total_steps"] == db["total_steps"] == 3
    assert da["world_size"] == 2 and db["world_size"] == 1
    for key in ("dev_frame_acc", "train_frame_acc", "frames"):
        assert da["epochs"][0][key] == db["epochs"][0][key], key
    assert abs(da["epochs"][0]["train_loss"] - db["epochs"][0]["train_loss"]) < 1e-9
    # Rank 0 writes the outputs; rank 1 only its own log.
    logs = sorted(p.name for p in (ddp / "log").glob("*.log"))
    assert logs == ["train.log", "train.rank1.log"]
    assert "rank 1 of 2" in (ddp / "log" / "train.rank1.log").read_text()


def test_ranks_share_out_the_single_process_batch_sequence(toy_data):
    data_dir, _ = toy_data
    cuts = load_split(data_dir, "train")
    single = EpochBatches(make_sampler(cuts, 3.0, shuffle=True, seed=5))
    ranks = [EpochBatches(make_sampler(cuts, 3.0, shuffle=True, seed=5), 2, r) for r in (0, 1)]
    for epoch in (0, 3):
        for b in (single, *ranks):
            b.start(epoch)
        seq = [[c.id for c in batch] for batch in single]
        per_rank = [[[c.id for c in batch] for batch in b] for b in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) >= 4
        full = 2 * (len(seq) // 2)
        assert per_rank[0][: full // 2] == seq[0:full:2]
        assert per_rank[1][: full // 2] == seq[1:full:2]
        dealt = [i for r in per_rank for batch in r for i in batch]
        assert len(dealt) == len(set(dealt))  # nothing twice
        assert len(dealt) >= len(cuts) - 1  # at most a lone last cut is dropped
