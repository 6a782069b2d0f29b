"""The report says which senone priors each system was decoded with."""

from __future__ import annotations

import json

from asr_kd.report.collect import SystemDirs, collect


def write_decode(exp, split: str, priors: str | None, wer: float) -> None:
    out = exp / f"decode_{split}"
    out.mkdir(parents=True)
    doc = {"wer": wer, "lm_weight": 9.0, "word_ins_penalty": 0.0, "rtf": 0.1,
           "selected_by": "best_on_this_set" if split == "dev" else "given"}  # fmt: skip
    if priors is not None:  # decodes before the field: alignment counts
        doc["priors"] = priors
    (out / "wer.json").write_text(json.dumps(doc))


def test_posterior_priors_are_noted_counts_are_the_default(tmp_path):
    systems = {}
    for name, priors in (("baseline", None), ("student", "counts"), ("soft", "posteriors")):
        for split in ("dev", "test"):
            write_decode(tmp_path / name, split, priors, 5.0)
        systems[name] = SystemDirs(name, tmp_path / name)
    results = collect(systems)
    assert results["soft"].wer == {"dev": 5.0, "test": 5.0}
    assert any("senone priors from posteriors" in n for n in results["soft"].notes)
    assert not any("priors" in n for n in results["baseline"].notes + results["student"].notes)
