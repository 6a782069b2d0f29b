import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio
import yaml

from asr_kd.errors import ConfigError
from asr_kd.models import (
    DNN,
    AcousticModel,
    ModelConfigError,
    ModelSpec,
    available_models,
    build_model,
    model_config,
    splice_frames,
)

FEAT_DIM, NUM_SENONES = 6, 7
# Every preset except the paper DNN (85M parameters; counted on the meta device below).
PRESETS = [
    (arch, preset)
    for arch, presets in available_models().items()
    for preset in presets
    if (arch, preset) != ("dnn", "paper")
]
TINY = [(arch, "tiny") for arch in available_models()]


def build(arch: str, preset: str, seed: int = 0) -> AcousticModel:
    torch.manual_seed(seed)
    return build_model(ModelSpec(arch, preset), FEAT_DIM, NUM_SENONES)


def padded_batch(lengths: list[int], garbage: float = 1e3, seed: int = 1):
    """Features [B, T, F] whose padding holds large garbage, and lengths [B]."""
    g = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    feats = torch.randn(len(lengths), frames, FEAT_DIM, generator=g)
    lens = torch.tensor(lengths)
    pad = torch.arange(frames) >= lens.unsqueeze(1)
    feats[pad] = garbage * torch.randn(int(pad.sum()), FEAT_DIM, generator=g)
    return feats, lens


def test_registry_lists_the_four_architectures():
    models = available_models()
    assert set(models) == {"dnn", "tdnn", "lstm", "conformer"}
    for presets in models.values():
        assert {"small", "tiny"} <= set(presets)
    assert "paper" in models["dnn"]


@pytest.mark.parametrize("arch,preset", PRESETS)
def test_output_shape_and_lengths(arch, preset):
    model = build(arch, preset).eval()
    feats, lens = padded_batch([13, 9, 1])
    with torch.no_grad():
        logits, out_lens = model(feats, lens)
    assert logits.shape == (3, 13, NUM_SENONES)
    assert torch.equal(out_lens, lens)
    assert torch.isfinite(logits).all()
    assert model.feat_dim == FEAT_DIM and model.num_senones == NUM_SENONES


@pytest.mark.parametrize("arch,preset", PRESETS)
def test_padding_does_not_leak_in_eval(arch, preset):
    """A sequence's logits are the same alone as padded in a batch (padding = garbage)."""
    model = build(arch, preset).eval()
    feats, lens = padded_batch([13, 9, 4, 1])
    with torch.no_grad():
        batch_logits, _ = model(feats, lens)
        for b, n in enumerate(lens.tolist()):
            alone, _ = model(feats[b : b + 1, :n], lens[b : b + 1])
            torch.testing.assert_close(batch_logits[b, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,preset", PRESETS)
def test_padding_content_does_not_matter_in_training(arch, preset):
    """In training mode too (BatchNorm statistics, dropout), padding values are ignored."""
    model = build(arch, preset).train()
    clean, lens = padded_batch([11, 7, 3], garbage=0.0)
    noisy, _ = padded_batch([11, 7, 3], garbage=1e3)
    outs = []
    for feats in (clean, noisy):
        torch.manual_seed(3)  # same dropout masks
        outs.append(model(feats, lens)[0].detach())
    valid = torch.arange(11) < lens.unsqueeze(1)
    torch.testing.assert_close(outs[0][valid], outs[1][valid], atol=1e-5, rtol=1e-5)


def test_paper_dnn_has_85m_parameters():
    spec = ModelSpec("dnn", preset="paper")
    with torch.device("meta"):
        model = build_model(spec, feat_dim=40, num_senones=14000)
    weights = 26 * 40 * 2560 + 7 * 2560**2 + 2560 * 14000
    biases = 8 * 2560 + 14000
    assert model.num_params() == weights + biases
    assert abs(model.num_params() / 85e6 - 1) < 0.01
    assert model.frame_context == (20, 5)  # 26 frames, the target at the 21st
    assert model.flops_per_frame() == 2 * weights


def test_dnn_flops_are_twice_the_matmul_sizes():
    model = build_model(ModelSpec("dnn", "small"), feat_dim=40, num_senones=500)
    window, width = 11 * 40, 512
    assert model.flops_per_frame() == 2 * (window * width + 3 * width * width + width * 500)
    assert model.num_params() == window * width + 3 * width**2 + width * 500 + 4 * width + 500


def test_splice_puts_the_target_at_left_context_and_replicates_edges():
    # Frame t of sequence b holds [t, 100 * b]; sequence 1 is 3 frames then padding (-1).
    frames, left, right = 6, 3, 2
    feats = torch.stack([torch.arange(frames).float(), torch.zeros(frames)], dim=-1).repeat(2, 1, 1)
    feats[1, :, 1] = 100.0
    feats[1, 3:] = -1.0
    lens = torch.tensor([6, 3])
    windows = splice_frames(feats, lens, left, right).view(2, frames, left + 1 + right, 2)
    assert torch.equal(windows[0, :, left, 0], torch.arange(frames).float())
    # Sequence 0, frame 1: frames -2..3 with frames before 0 replicating frame 0.
    assert windows[0, 1, :, 0].tolist() == [0, 0, 0, 1, 2, 3]
    # Sequence 1, frame 2 (its last): frames past the end replicate frame 2, not padding.
    assert windows[1, 2, :, 0].tolist() == [0, 0, 1, 2, 2, 2]
    assert (windows[1, :3, :, 1] == 100.0).all()


@pytest.mark.parametrize("arch", ["dnn", "tdnn"])
def test_frame_context_is_the_receptive_field(arch):
    """Bumping input frame 15 changes exactly the outputs whose window reaches it."""
    model = build(arch, "tiny").eval()
    left, right = model.frame_context
    contexts = [range(-left, right + 1)] if arch == "dnn" else model.contexts
    reach = {0}
    for offsets in contexts:  # offsets of the input frames each output frame reads
        reach = {r + o for r in reach for o in offsets}
    assert (min(reach), max(reach)) == (-left, right)
    feats = torch.randn(1, 30, FEAT_DIM)
    lens = torch.tensor([30])
    bumped = feats.clone()
    bumped[0, 15] += 5.0
    with torch.no_grad():
        changed = (model(bumped, lens)[0] - model(feats, lens)[0]).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == sorted(15 - r for r in reach)


def test_lstm_delay_looks_ahead_exactly_delay_frames():
    model = build_model(ModelSpec("lstm", "tiny", {"delay": 3}), FEAT_DIM, NUM_SENONES).eval()
    feats = torch.randn(1, 20, FEAT_DIM)
    lens = torch.tensor([20])
    bumped = feats.clone()
    bumped[0, 10] += 5.0
    with torch.no_grad():
        changed = (model(bumped, lens)[0] - model(feats, lens)[0]).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == list(range(7, 20))


def test_conformer_matches_torchaudio_without_padding():
    model = build("conformer", "tiny").eval()
    feats = torch.randn(2, 12, FEAT_DIM)
    lens = torch.tensor([12, 12])
    with torch.no_grad():
        ours, _ = model(feats, lens)
        hidden, _ = torchaudio.models.Conformer.forward(model.encoder, model.input(feats), lens)
        torch.testing.assert_close(ours, model.output(hidden), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,preset", TINY + [("lstm", "tiny_bidir")])
def test_a_few_steps_reduce_the_loss(arch, preset):
    model = build(arch, preset).train()
    feats, lens = padded_batch([16, 12, 8], garbage=0.0)
    g = torch.Generator().manual_seed(2)
    targets = torch.randint(0, NUM_SENONES, (3, 16), generator=g)
    targets[torch.arange(16) >= lens.unsqueeze(1)] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits, _ = model(feats, lens)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unknown_arch_preset_and_option_name_the_valid_ones():
    with pytest.raises(ValueError, match="conformer, dnn, lstm, tdnn"):
        build_model(ModelSpec("mlp"), FEAT_DIM, NUM_SENONES)
    with pytest.raises(ValueError, match="paper, medium, small, tiny"):
        build_model(ModelSpec("dnn", "huge"), FEAT_DIM, NUM_SENONES)
    with pytest.raises(ValueError, match="hidden_dim") as info:
        build_model(ModelSpec("dnn", "tiny", {"width": 3}), FEAT_DIM, NUM_SENONES)
    assert "width" in str(info.value) and "left_context" in str(info.value)
    # The CLI reports ConfigError as a one-line message.
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ModelConfigError)


def test_bad_option_values_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="hidden_dim must be int"):
        model_config(ModelSpec("dnn", "tiny", {"hidden_dim": "wide"}), 40, 10)
    with pytest.raises(ValueError, match="dropout must be in"):
        build_model(ModelSpec("dnn", "tiny", {"dropout": 1.5}), 40, 10)
    with pytest.raises(ValueError, match="bidirectional"):
        build_model(ModelSpec("lstm", "tiny", {"bidirectional": True}), 40, 10)
    with pytest.raises(ValueError, match="min <= 0 <= max"):
        build_model(ModelSpec("tdnn", "tiny", {"contexts": [[1, 2]]}), 40, 10)
    with pytest.raises(ValueError, match="divisible"):
        build_model(ModelSpec("conformer", "tiny", {"num_heads": 3}), 40, 10)
    with pytest.raises(ValueError, match="contradicts"):
        model_config(ModelSpec("dnn", "tiny", {"feat_dim": 13}), 40, 10)


def test_bad_inputs_are_rejected():
    model = build("dnn", "tiny")
    with pytest.raises(ValueError, match=f"\\[batch, frames, {FEAT_DIM}\\]"):
        model(torch.randn(2, 5, FEAT_DIM + 1), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match="in \\[1, 5\\]"):
        model(torch.randn(2, 5, FEAT_DIM), torch.tensor([6, 5]))


def test_spec_and_config_round_trip():
    spec = ModelSpec("tdnn", "tiny", {"contexts": ((-1, 0, 1), (-2, 2)), "dropout": 0.1})
    data = yaml.safe_load(yaml.safe_dump(spec.to_dict()))
    assert ModelSpec.from_dict(data).to_dict() == spec.to_dict()
    with pytest.raises(ValueError, match="arch"):
        ModelSpec.from_dict({"preset": "tiny"})

    config = model_config(ModelSpec.from_dict(data), 40, 10)
    assert config.contexts == ((-1, 0, 1), (-2, 2)) and config.dropout == 0.1
    stored = json.loads(json.dumps(dataclasses.asdict(config)))
    assert stored["feat_dim"] == 40 and stored["num_senones"] == 10
    # A checkpoint's stored config rebuilds the same model without the preset.
    rebuilt = model_config(ModelSpec("tdnn", options=stored), 40, 10)
    assert rebuilt == config
    a = build_model(ModelSpec.from_dict(data), 40, 10).state_dict()
    b = build_model(ModelSpec("tdnn", options=stored), 40, 10).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def test_no_preset_means_the_config_defaults():
    config = model_config(ModelSpec("dnn"), 40, 500)
    assert config == dataclasses.replace(
        model_config(ModelSpec("dnn", "small"), 40, 500), feat_dim=40
    )
    assert isinstance(build_model(ModelSpec("dnn"), 40, 500), DNN)


def _windows_of(feats: torch.Tensor, length: int, left: int, right: int) -> torch.Tensor:
    """``[T, K, F]``: frame t's window by index gather, edges replicated (one sequence)."""
    idx = (torch.arange(length)[:, None] + torch.arange(-left, right + 1)).clamp(0, length - 1)
    return feats[idx]


@pytest.mark.parametrize("arch,preset", [("dnn", "tiny"), ("dnn", "small"), ("tdnn", "tiny"),
                                          ("tdnn", "small")])  # fmt: skip
def test_forward_windows_equals_forward_frame_by_frame(arch, preset):
    """The frame path's logits (one window per frame) are the utterance path's."""
    model = build(arch, preset).eval()
    feats, lens = padded_batch([23, 9, 1])
    left, right = model.frame_context
    with torch.no_grad():
        logits, _ = model(feats, lens)
        for b, n in enumerate(lens.tolist()):
            windows = _windows_of(feats[b], n, left, right)
            torch.testing.assert_close(model.forward_windows(windows), logits[b, :n],
                                       atol=1e-5, rtol=1e-5)  # fmt: skip
            via_forward, ones = model(windows, torch.zeros(n, dtype=torch.int64), windows=True)
            assert via_forward.shape == (n, 1, NUM_SENONES) and ones.tolist() == [1] * n
            torch.testing.assert_close(via_forward[:, 0], logits[b, :n], atol=1e-5, rtol=1e-5)


def test_dnn_windows_need_the_model_context_and_sequence_models_have_none():
    model = build("dnn", "tiny")
    with pytest.raises(ValueError, match=r"\[N, 5, 6\]"):
        model.forward_windows(torch.zeros(4, 7, FEAT_DIM))
    assert not hasattr(build("lstm", "tiny"), "forward_windows")
    assert build("lstm", "tiny").frame_context is None


def test_dnn_dropout_reaches_the_model_from_the_options():
    model = build_model(ModelSpec("dnn", "small", {"dropout": 0.1}), FEAT_DIM, NUM_SENONES)
    assert model.dropout == 0.1
    windows = torch.randn(64, 11, FEAT_DIM)
    model.train()
    assert not torch.equal(model.forward_windows(windows), model.forward_windows(windows))
    model.eval()
    assert torch.equal(model.forward_windows(windows), model.forward_windows(windows))
