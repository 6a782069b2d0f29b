"""Data-parallel training on CUDA: two NCCL ranks give the model that two gloo ranks give.

Needs CUDA and NCCL; skipped otherwise. With one GPU both ranks share it, which NCCL
may refuse ("Duplicate GPU detected"): the test then skips, saying so (run it on a
machine with two GPUs). Both backends also match one process accumulating the two
ranks' batches (``accum_grad=2``), as the CPU test in test_distributed.py does.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_distributed import _config, _free_port
from train_toy import toy_builder

from asr_kd.train import train_model
from asr_kd.train.checkpoint import load_file

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and dist.is_nccl_available()), reason="needs CUDA and NCCL"
)


def _run(rank: int, world_size: int, port: int, backend: str, args: tuple) -> None:
    """One rank on ``cuda:rank`` (or the only GPU); ``backend`` of its process group."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUBLAS_WORKSPACE_CONFIG=":4096:8",
    )  # fmt: skip
    torch.use_deterministic_algorithms(True)
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}")
    torch.cuda.set_device(device)
    if backend == "gloo":  # the training joins an existing group instead of NCCL's
        dist.init_process_group("gloo", init_method="env://")
    data_dir, feature_dir, out, config = args
    try:
        train_model(data_dir, feature_dir, out, config, device=str(device), builder=toy_builder)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(backend: str, world_size: int, args: tuple) -> None:
    try:
        mp.spawn(_run, args=(world_size, _free_port(), backend, args), nprocs=world_size)
    except mp.ProcessRaisedException as e:
        if "Duplicate GPU" in str(e) and torch.cuda.device_count() < world_size:
            pytest.skip(f"NCCL refuses {world_size} ranks on {torch.cuda.device_count()} GPU(s)")
        raise


def test_nccl_ranks_train_the_model_gloo_ranks_train(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    outs = {name: tmp_path / name for name in ("nccl", "gloo", "single")}
    _train("nccl", 2, (data_dir, feature_dir, outs["nccl"], _config()))
    _train("gloo", 2, (data_dir, feature_dir, outs["gloo"], _config()))
    _train("gloo", 1, (data_dir, feature_dir, outs["single"], _config(accum_grad=2)))
    states = {k: load_file(d / "model.pt")["state_dict"] for k, d in outs.items()}
    for name, value in states["nccl"].items():
        torch.testing.assert_close(value, states["gloo"][name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(value, states["single"][name], rtol=1e-5, atol=1e-6)
