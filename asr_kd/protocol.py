"""The experiment protocol: which systems a recipe trains, decodes and reports.

Recipe policy lives in the config, not in shell (the ``protocol:`` section); the
recipe asks for it with ``asr-kd protocol --config C KEY`` and loops over the answer.
The paper's protocol (Hinton et al. 2015, section 4) as config values:

- ``teacher`` / ``ensemble.num_teachers``: the baseline and N teachers, trained
  identically, differing in seed (the ensemble's gain is measured against the mean of
  these single models, with their spread);
- ``baseline_in_ensemble``: the baseline is one of the ensemble's members (with N
  teachers, an ensemble of N + 1 models for N + 1 trainings; the demo's choice, one
  training fewer). Off, the ensemble is the N teachers and the baseline stands apart;
- ``student_seeds``: students trained from the same soft targets with these seeds
  (``exp/student``, ``exp/student_s1``, ...): the share of the gain kept gets an
  interval over seeds;
- ``student_overrides``: settings of those students beside the ``student`` and
  ``distill`` sections, ``{section: {key: value}}`` with section ``distill`` or
  ``student`` (``{}``: the sections as they are, from the cache). ``{distill: {source:
  on_the_fly}, student: {augment_...}}`` is consistent teaching of the full-data student:
  the teachers run on every perturbed window. The transfer stages' students (the omitted
  phone, the untranscribed audio) are taught the same way, so that they compare with
  ``exp/student``; the specialists' student and the sweeps keep the sections and their
  caches (the sweep then trains its own T = 2, alpha = 0.667 point);
- ``fractions`` x ``subset_seeds``: models on a speaker-stratified fraction of the
  training data, hard targets (section ``hard_3pct``) and soft targets (section
  ``student_3pct``), each given the whole set's number of updates
  (``updates_as_full``): ``exp/hard_<P>pct[_s<seed>]``, ``exp/soft_<P>pct[_s<seed>]``;
  the full-data pair is the baseline and the student;
- ``seeded_fractions``: the fractions trained with every subset seed (default: all); the
  others (points of the data-fraction curve) with the first seed only;
- ``soft_fraction_distill``: settings of the ``distill`` section for the soft-target
  fraction models (``{}``: the student's). ``alpha: 1.0`` trains them on the soft targets
  alone, as the paper's 3% question asks of soft targets (with a hard term, minutes of
  audio are memorised); ``source: on_the_fly`` runs the teachers on every training
  window instead of reading the cache, which with the ``augment_*`` settings of the
  fraction models' sections is consistent teaching (teacher and student see the same
  perturbed window; the README);
- ``decode_fractions``: which of those fractions' models are decoded (seed 0);
- ``decoded_teachers``: how many teachers (the first N) are decoded beside the baseline
  (default: all); every teacher's frame accuracy is measured either way. Each lattice
  decode costs minutes on 2 CPU cores: the demo decodes none (the baseline is the single
  model whose WER it reports);
- ``extra_set_systems``: the systems that decode the extra test sets (held-out voices,
  a second test set such as LibriSpeech's test-other) at dev's point: exp/ names
  (``baseline``, ``ensemble``, ``student``, ``teacher<N>``, ...; default the first three);
- ``decode_overrides``: decoder settings per system, ``{pattern: {key: value}}`` with
  shell patterns on the exp/ name; ``asr-kd protocol decode_options:SYSTEM`` prints
  every matching entry (in order) as ``--set key=value`` for ``asr-kd decode``;
- ``train_jobs``: independent trainings run at once, one thread each (the teachers,
  through ``train-ensemble --num-jobs``; the students and the data-fraction models, and
  the transfer stages' pair, as background jobs of the recipe): on 2 CPU cores two
  one-thread trainings do 1.47x the frames of one two-thread training
  (``bench/RESULTS.md``). 1 on a GPU, where ``ensemble.fused`` trains teachers together;
- ``specialists``, ``sweeps``: the optional stages.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProtocolConfig", "fraction_tag", "system_name"]

_SYSTEM = re.compile(r"baseline|ensemble|teacher\d+|student(_s\d+)?")


# (section, key, what sets it) of the students' settings that the recipe sets itself
_RECIPE_SET = (
    ("student", "seed", "protocol.student_seeds sets for each student"),
    ("student", "omit_phone", "only the transfer stage's student sets (transfer.omit_phone)"),
    ("distill", "teachers", "the recipe sets from the trained teachers (--teacher)"),
)


def fraction_tag(fraction: float) -> str:
    """``0.03`` -> ``3pct``, ``0.005`` -> ``0.5pct``."""
    pct = round(100 * fraction, 6)
    return f"{int(pct) if pct == int(pct) else pct}pct"


def system_name(kind: str, fraction: float | None = None, seed: int = 0) -> str:
    """``student``/``student_s1``, ``hard_3pct``/``hard_3pct_s1``: the exp/ directory name."""
    name = kind if fraction is None else f"{kind}_{fraction_tag(fraction)}"
    return name if seed == 0 else f"{name}_s{seed}"


@dataclass(frozen=True)
class ProtocolConfig:
    """The ``protocol:`` section (see the module docstring).

    Attributes:
        student_seeds: seeds of the distilled students (the first is ``exp/student``).
        student_overrides: ``{distill|student: {key: value}}`` for those students (e.g.
            ``{distill: {source: on_the_fly}, student: {augment_noise: 0.3}}``).
        fractions: data fractions (< 1) for the hard-vs-soft comparison.
        subset_seeds: seeds of the subsets (the first is the unsuffixed name).
        seeded_fractions: fractions trained with every subset seed (None: all of them);
            the other fractions with the first seed only.
        soft_fraction_distill: ``{distill key: value}`` for the soft-target fraction
            models (e.g. ``{alpha: 1.0, source: on_the_fly}``); the rest is the student's.
        decode_fractions: fractions whose (first-seed) models are decoded.
        baseline_in_ensemble: the baseline is a member of the ensemble.
        decoded_teachers: the first N teachers are decoded (None: all of them).
        extra_set_systems: exp/ names of the systems that decode the extra test sets.
        train_jobs: independent trainings run at once (one thread each); 1: one after
            another.
        specialists: run the specialist stages.
        sweeps: run the optional sweep stages (ensemble size, T, alpha).
        decode_overrides: ``{pattern: {decode key: value}}``: settings of the ``decode``
            section for the systems whose exp/ name matches the shell pattern, e.g.
            ``{"hard_*pct*": {lattice: false, max_active: 2000}}``.
    """

    student_seeds: tuple[int, ...] = (0,)
    student_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    fractions: tuple[float, ...] = (0.03,)
    subset_seeds: tuple[int, ...] = (0,)
    seeded_fractions: tuple[float, ...] | None = None
    soft_fraction_distill: dict[str, Any] = field(default_factory=dict)
    decode_fractions: tuple[float, ...] = (0.03,)
    baseline_in_ensemble: bool = False
    decoded_teachers: int | None = None
    extra_set_systems: tuple[str, ...] = ("baseline", "ensemble", "student")
    train_jobs: int = 1
    specialists: bool = False
    sweeps: bool = False
    decode_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("student_seeds", "subset_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                raise ValueError(f"{name} must be distinct non-negative seeds, got {seeds}")
        if any(not 0.0 < f < 1.0 for f in (*self.fractions, *self.decode_fractions)):
            raise ValueError(
                f"fractions must lie in (0, 1) (the full set is the baseline and the student), "
                f"got {self.fractions} / {self.decode_fractions}"
            )
        for pattern, options in self.decode_overrides.items():
            _check_set_mapping(f"decode_overrides[{pattern!r}]", "decode", options)
        if self.train_jobs < 1:
            raise ValueError(f"train_jobs must be at least 1, got {self.train_jobs}")
        if self.decoded_teachers is not None and self.decoded_teachers < 0:
            raise ValueError(f"decoded_teachers must be >= 0, got {self.decoded_teachers}")
        bad = [n for n in self.extra_set_systems if not _SYSTEM.fullmatch(n)]
        if bad or len(set(self.extra_set_systems)) != len(self.extra_set_systems):
            raise ValueError(
                f"extra_set_systems must be distinct exp/ names of stage 18's systems "
                f"(baseline, ensemble, teacher<N>, student[_s<seed>]), got {self.extra_set_systems}"
            )
        _check_distill_settings("soft_fraction_distill", self.soft_fraction_distill)
        self._check_student_overrides()
        for name in ("decode_fractions", "seeded_fractions"):
            missing = sorted(set(getattr(self, name) or ()) - set(self.fractions))
            if missing:
                raise ValueError(f"{name} {missing} are not among fractions {self.fractions}")

    def _check_student_overrides(self) -> None:
        over = self.student_overrides
        if not isinstance(over, dict) or set(over) - {"distill", "student"}:
            raise ValueError(
                f"student_overrides must map the sections distill and student to settings, "
                f"got {over!r}"
            )
        for section, options in over.items():
            _check_set_mapping(f"student_overrides.{section}", section, options)
        _check_distill_settings("student_overrides.distill", over.get("distill", {}))
        # what the recipe sets per student: an override would give every student the same
        for section, key, by in _RECIPE_SET:
            if key in over.get(section, {}):
                raise ValueError(f"student_overrides.{section} sets {key}, which {by}")
        augmented = sorted(
            k for k, v in over.get("student", {}).items() if k.startswith("augment_") and v
        )
        if augmented and self.student_source == "cache":
            raise ValueError(
                f"student_overrides.student sets {', '.join(augmented)}: the cached soft targets "
                "are of unperturbed windows; set student_overrides.distill.source: on_the_fly "
                "(the teachers see the same perturbed windows)"
            )

    def seeds_for(self, fraction: float) -> tuple[int, ...]:
        """The subset seeds that ``fraction`` is trained with."""
        if fraction not in self.fractions:
            raise KeyError(f"{fraction} is not among protocol.fractions {self.fractions}")
        if self.seeded_fractions is None or fraction in self.seeded_fractions:
            return self.subset_seeds
        return self.subset_seeds[:1]

    def decode_options(self, system: str) -> list[str]:
        """``--set key=value`` arguments of ``asr-kd decode`` for ``system`` (an exp/ name):
        those of every ``decode_overrides`` pattern it matches, in the file's order."""
        args: list[str] = []
        for pattern, options in self.decode_overrides.items():
            if fnmatch.fnmatchcase(system, pattern):
                args += _set_flags(options)
        return args

    def soft_fraction_options(self) -> list[str]:
        """``--set distill.KEY=VALUE`` arguments of ``asr-kd distill`` for the soft-target
        fraction models (``soft_fraction_distill``)."""
        return _set_flags(self.soft_fraction_distill, "distill.")

    @property
    def soft_fraction_source(self) -> str:
        """``cache`` or ``on_the_fly``: where the soft-target fraction models' targets come from."""
        return str(self.soft_fraction_distill.get("source", "cache"))

    def student_options(self) -> list[str]:
        """``--set SECTION.KEY=VALUE`` arguments of ``asr-kd distill`` for the students of
        stage 16 (``student_overrides``)."""
        return [
            a
            for section, opts in self.student_overrides.items()
            for a in _set_flags(opts, f"{section}.")
        ]

    @property
    def student_source(self) -> str:
        """``cache`` or ``on_the_fly``: where the students' soft targets come from."""
        return str(self.student_overrides.get("distill", {}).get("source", "cache"))

    def value(self, key: str) -> str:
        """One field as the shell reads it: a list space-separated, a bool ``yes``/``no``."""
        if key not in self.__dataclass_fields__:
            known = ", ".join(self.__dataclass_fields__)
            raise KeyError(f"protocol has no {key!r} (known: {known})")
        value = getattr(self, key)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if value is None:
            return ""
        if isinstance(value, tuple):
            return " ".join(str(v) for v in value)
        return str(value)


def _set_args(options: dict[str, Any]) -> list[str]:
    """``key=value`` with the value as YAML reads it back (``false``, ``2000``, ``[6,8]``)."""
    return [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in options.items()]


def _set_flags(options: dict[str, Any], prefix: str = "") -> list[str]:
    """``["--set", "<prefix>key=value", ...]``: ``options`` as ``--set`` arguments."""
    return [a for arg in _set_args(options) for a in ("--set", prefix + arg)]


def _check_distill_settings(name: str, options: Any) -> None:
    """Refuse ``distill`` settings that the recipe cannot pass, or that would override
    its own (the cache directory)."""
    _check_set_mapping(name, "distill", options)
    alpha = options.get("alpha")
    if alpha is not None and not (isinstance(alpha, int | float) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"{name}.alpha must be in [0, 1], got {alpha!r}")
    if options.get("source", "cache") not in ("cache", "on_the_fly"):
        raise ValueError(f"{name}.source must be cache or on_the_fly, got {options['source']!r}")
    if options.get("cache_dir") is not None:
        raise ValueError(f"{name} sets no cache_dir: the recipe's cache is used")


def _check_set_mapping(name: str, section: str, options: Any) -> None:
    """Refuse ``options`` unless it maps ``section`` keys to values that the recipe can
    pass as ``--set`` arguments (it splits them on spaces)."""
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"{name} must map {section} keys to values, got {options!r}")
    for arg in _set_args(options):
        if any(c.isspace() for c in arg):
            raise ValueError(f"{name}: {arg!r} holds a space")
