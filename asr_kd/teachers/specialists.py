"""The generalist + specialists system as a teacher: decode, evaluate and distil it.

``asr_kd.teachers.load("exp/specialists")`` (any ``train-specialists`` output, a
directory holding ``specialists.json``) returns a :class:`SpecialistSystem`: per
batch, the generalist's distribution, the specialists active on each frame (the
generalist's ``top_n`` senones fall in their cluster) and the KL combination of
:func:`asr_kd.teachers.specialist_combine.kl_combine`. It follows the
:class:`~asr_kd.teachers.Teacher` protocol, so ``asr-kd decode --model
exp/specialists``, ``cache-soft-targets --teacher exp/specialists`` and
``eval-specialists`` treat it as one model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.checked import load_weights, open_checkpoint
from asr_kd.errors import BadInputError, ConfigError, MissingInputError
from asr_kd.stage import file_digest, is_done
from asr_kd.teachers.base import Teacher, TeacherBase, check_temperature
from asr_kd.teachers.neural import NeuralTeacher
from asr_kd.teachers.specialist_combine import active_specialists, kl_combine, make_specialist
from asr_kd.teachers.specs import SPECIALISTS_FILE, teacher_file

__all__ = ["SpecialistSystem", "load_specialist_system"]

MAX_CHUNK_ELEMENTS = 1 << 25  # frames x specialists x senones per KL-combination chunk


class SpecialistSystem(TeacherBase):
    """A generalist and its specialists, combined per frame (module doc).

    Args:
        generalist: a network teacher.
        specialists: one network teacher per cluster, ``n_m + 1`` classes, dustbin first.
        clusters: their senone ids.
        top_n, em_iters, em_tol: inference settings.
        weight: each specialist's KL term against the generalist's (the paper: 1).
        name, source: see the ``Teacher`` protocol.
    """

    def __init__(
        self,
        generalist: NeuralTeacher,
        specialists: Sequence[NeuralTeacher],
        clusters: Sequence[Sequence[int]],
        top_n: int,
        em_iters: int,
        em_tol: float,
        name: str,
        source: str,
        weight: float = 1.0,
    ):
        self.generalist = generalist
        self.specialists = list(specialists)
        self.clusters = [torch.as_tensor(c, dtype=torch.long) for c in clusters]
        self.top_n, self.em_iters, self.em_tol = int(top_n), int(em_iters), float(em_tol)
        self.weight = float(weight)
        self.name, self.source = name, source
        self.num_senones = generalist.num_senones
        self.tree_id = generalist.tree_id
        self.frame_shift = generalist.frame_shift
        self.needs_features = True
        owner = torch.full((self.num_senones,), -1, dtype=torch.long)
        for m, c in enumerate(self.clusters):
            owner[c] = m
        self.cluster_of = owner

    @property
    def device(self) -> torch.device:
        return self.generalist.device

    @torch.no_grad()
    def posteriors_batch(
        self, cuts: Sequence[Cut], feats: Sequence[np.ndarray] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(combined [B, T, S], generalist [B, T, S], active [B, T, M], lengths)``
        probabilities at temperature 1 (padding frames: the generalist's uniform)."""
        batch = self.generalist.input_batch(cuts, feats)  # specialists share its normaliser
        gen_lp, lengths = self.generalist.log_probs_of(batch)
        spec_lp = [s.log_probs_of(batch)[0] for s in self.specialists]
        b, t, s = gen_lp.shape
        valid = torch.arange(t, device=gen_lp.device) < lengths.to(gen_lp.device)[:, None]
        gen_all = gen_lp.exp()
        gen = gen_all[valid]
        spec = [lp[valid].exp() for lp in spec_lp]
        active = active_specialists(gen, self.cluster_of, len(self.clusters), self.top_n)
        combined = gen.clone()
        rows = active.any(1).nonzero().squeeze(1)
        chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, len(self.clusters) * s))
        for start in range(0, len(rows), chunk):
            r = rows[start : start + chunk]
            combined[r] = kl_combine(gen[r], [p[r] for p in spec], self.clusters, active[r],
                                     self.em_iters, self.em_tol, self.weight)  # fmt: skip
        out = gen_all.clone()
        out[valid] = combined
        act = torch.zeros(b, t, len(self.clusters), dtype=torch.bool, device=gen_lp.device)
        act[valid] = active
        return out, gen_all, act, lengths

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_temperature(temperature)
        probs, _, _, lengths = self.posteriors_batch(cuts, feats)
        logp = probs.clamp(min=1e-30).log()
        return torch.log_softmax(logp / temperature, dim=-1), lengths


def load_specialist_system(
    path: Path | str, load_generalist: Callable[[str], Teacher], amp: str = "auto"
) -> SpecialistSystem:
    """Load a ``train-specialists`` output as one teacher.

    Args:
        path: the stage's output directory.
        load_generalist: loads the generalist's spec (``specialists.json``) as a teacher.
        amp: ``auto`` (bf16 autocast on CUDA), ``bf16`` or ``off``.

    Raises:
        MissingInputError: the stage has not finished, or a specialist file is missing.
        BadInputError: the generalist's file changed since the specialists were trained.
    """
    path = Path(path)
    if not is_done(path):
        raise MissingInputError(f"{path} is incomplete: run the 'train-specialists' stage first")
    doc = json.loads((path / SPECIALISTS_FILE).read_text())
    gen = load_generalist(doc["generalist"])
    gen_file = teacher_file(doc["generalist"])
    if not isinstance(gen, NeuralTeacher) or gen_file is None:
        raise ConfigError(f"{path}: its generalist {doc['generalist']} is not a network")
    if file_digest(gen_file) != doc["generalist_digest"]:
        raise BadInputError(
            f"{path}: the generalist {doc['generalist']} changed after its specialists were "
            "trained; rerun 'train-specialists' with --force"
        )
    specialists, clusters = [], []
    for entry in doc["specialists"]:
        file = path / entry["file"]
        if not file.is_file():
            raise MissingInputError(f"{file} does not exist: rerun 'train-specialists'")
        saved = open_checkpoint(file, "train-specialists")
        if not isinstance(saved, dict) or not {"cluster", "state_dict"} <= set(saved):
            raise BadInputError(f"{file} is no specialist checkpoint (no cluster or state_dict); "
                                "rerun 'train-specialists' with --force")  # fmt: skip
        cluster = [int(s) for s in saved["cluster"]]
        model = make_specialist(gen.model, gen.num_senones, cluster)
        load_weights(model, saved["state_dict"], file, "train-specialists")
        specialists.append(NeuralTeacher(
            model, gen.normalizer, len(cluster) + 1, gen.tree_id, gen.frame_shift,
            f"specialist{entry['index']}", f"specialist:{file}", gen.device, amp,
        ))  # fmt: skip
        clusters.append(cluster)
    source = f"specialists:{path.resolve()}@{file_digest(path / SPECIALISTS_FILE)}"
    return SpecialistSystem(gen, specialists, clusters, doc["top_n"], doc["em_iters"],
                            doc.get("em_tol", 1e-7), path.name, source,
                            doc.get("specialist_weight", 1.0))  # fmt: skip
