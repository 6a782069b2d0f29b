"""The toy senone task of ``tests/train`` with a tree: which senones are which phone's.

Senones 1, 2 and 3 are the phone AH (state 0 split by a question on the left phone into
1 and 2; state 1 is 3); 0 is SIL, 4-5 IY and 6-7 S.
"""

from __future__ import annotations

import numpy as np
from train_toy import make_toy_data

from asr_kd.distill import DistillConfig, cache_soft_targets
from asr_kd.train import TrainConfig, train_model
from asr_kd.tree.context_tree import ContextTree
from asr_kd.tree.questions import Question

S, T = 8, 2.0
AH = [1, 2, 3]
PHONES = {"<eps>": 0, "SIL": 1, "AH": 2, "IY": 3, "S": 4, "#0": 5}
DNN = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 32, "left_context": 1,
                                  "right_context": 1}}  # fmt: skip


def toy_tree() -> ContextTree:
    """The tree of the module doc (9 nodes, preorder)."""
    senone = [0, -1, 1, 2, 3, 4, 5, 6, 7]
    question = [-1, 0, -1, -1, -1, -1, -1, -1, -1]
    yes = [-1, 2, -1, -1, -1, -1, -1, -1, -1]
    no = [-1, 3, -1, -1, -1, -1, -1, -1, -1]
    roots = {(1, 0): 0, (2, 0): 1, (2, 1): 4, (3, 0): 5, (3, 1): 6, (4, 0): 7, (4, 1): 8}
    return ContextTree(
        phones=PHONES, questions=[Question("left", (3,), "IY")], roots=roots,
        question=np.array(question), yes=np.array(yes), no=np.array(no),
        senone=np.array(senone), gain=np.zeros(9), count=np.ones(9),
    )  # fmt: skip


def train_config(**changes) -> TrainConfig:
    """Three quick epochs of the frame path."""
    base = dict(model=DNN, max_epochs=3, max_duration=3.0, lr=0.1, num_workers=0,
                log_interval=100, patience=0, data_path="frames", frame_batch_size=64)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def make_world(root) -> dict:
    """Toy targets with a tree, two teachers on all frames and a k=S cache of them."""
    data, feats = make_toy_data(root / "toy")
    toy_tree().save(data / "tree.json")
    teachers = []
    for i in (1, 2):
        out = root / "exp" / f"teacher{i}"
        train_model(data, feats, out, train_config(seed=i), device="cpu")
        teachers.append(str(out))
    config = DistillConfig(temperature=T, teachers=tuple(teachers), k=S, prob_dtype="float32",
                           cache_dir=str(root / "soft"))  # fmt: skip
    cache_soft_targets(data, feats, config.cache_dir, config, device="cpu", max_duration=3.0)
    return {"root": root, "data": data, "feats": feats, "teachers": teachers, "kd": config}
