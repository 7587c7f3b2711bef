"""Models: configs, shapes, padding invariance, gradients, overfitting a tiny batch."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from seqkit.errors import ConfigError, TensorInputError
from seqkit.models import (
    EncoderConfig,
    ModelConfig,
    PeepholeLSTM,
    PredictorConfig,
    build_model,
)
from seqkit.models.encoder import Encoder, StreamStacker, reverse_index, stack_frames

F = 6  # features per frame in these tests
V = 7  # blank + 6 phones

ENCODERS = {
    "blstm": EncoderConfig(layers=2, hidden=8),
    "lstm": EncoderConfig(layers=2, hidden=8, bidirectional=False),
    "blstm_projection": EncoderConfig(layers=2, hidden=8, projection=5),
    "blstm_stack3": EncoderConfig(layers=2, hidden=8, stack=3),
    "peephole_blstm": EncoderConfig(layers=2, hidden=8, cell="peephole"),
    "peephole_projection_stack2": EncoderConfig(
        layers=1, hidden=8, cell="peephole", projection=4, stack=2
    ),
}
PREDICTOR = PredictorConfig(embed=5, hidden=8, layers=2)


def tiny_B3_T11_F6(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (3, 11, F) with lengths 11, 7, 2 and non-zero garbage in the padding."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(3, 11, F, generator=gen)
    return feats, torch.tensor([11, 7, 2])


def tiny_targets_B3_U4() -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (3, 4) with lengths 4, 2, 1; padding is -1 (must be ignored)."""
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1], [3, -1, -1, -1]])
    return targets, torch.tensor([4, 2, 1])


def make(
    kind: str, encoder: EncoderConfig = ENCODERS["blstm"], seed: int = 0, joint_stride: int = 1
) -> nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(kind=kind, encoder=encoder, predictor=PREDICTOR, joint_dim=9,
                         joint_stride=joint_stride)
    return build_model(config, input_dim=F, vocab_size=V).eval()


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: EncoderConfig(layers=0), "encoder.layers"),
        (lambda: EncoderConfig(hidden="250"), "encoder.hidden"),
        (lambda: EncoderConfig(bidirectional="yes"), "encoder.bidirectional"),
        (lambda: EncoderConfig(dropout=1.0), "encoder.dropout"),
        (lambda: EncoderConfig(projection=250), "encoder.projection"),
        (lambda: EncoderConfig(cell="gru"), "encoder.cell"),
        (lambda: EncoderConfig(stack=0), "encoder.stack"),
        (lambda: PredictorConfig(embed=0), "predictor.embed"),
        (lambda: PredictorConfig(layers=1.5), "predictor.layers"),
        (lambda: PredictorConfig(dropout=-0.1), "predictor.dropout"),
        (lambda: ModelConfig(kind="hmm"), "model.kind"),
        (lambda: ModelConfig(joint_dim=0), "model.joint_dim"),
        (lambda: ModelConfig(joint_stride=0), "model.joint_stride"),
        (lambda: ModelConfig(joint_stride=2.0), "model.joint_stride"),
        (lambda: ModelConfig(ctc_loss_scale=-0.1), "model.ctc_loss_scale"),
        (lambda: ModelConfig(ctc_loss_scale=True), "model.ctc_loss_scale"),
        (lambda: ModelConfig(encoder={"layers": 3}), "model.encoder"),
    ],
)
def test_config_rejects_bad_value_naming_the_field(build, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build()


def test_config_round_trips_through_plain_dicts() -> None:
    config = ModelConfig(
        kind="transducer",
        encoder=EncoderConfig(layers=4, hidden=32, bidirectional=False, projection=16, stack=2),
        predictor=PredictorConfig(embed=7, hidden=11, layers=2, dropout=0.1),
        joint_dim=13,
    )
    data = config.to_dict()
    assert data["encoder"]["projection"] == 16 and data["predictor"]["embed"] == 7
    assert ModelConfig.from_dict(data) == config
    assert EncoderConfig.from_dict(config.encoder.to_dict()) == config.encoder
    assert ModelConfig.from_dict({}) == ModelConfig()  # missing keys take defaults
    assert ModelConfig.from_dict({"encoder": {"layers": 5}}).encoder.layers == 5


def test_config_rejects_unknown_key_listing_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"encoder\.hiden.*valid keys here are "
                                          r"model\.encoder\.layers, model\.encoder\.hidden"):
        ModelConfig.from_dict({"encoder": {"hiden": 250}})
    with pytest.raises(ConfigError, match=r"model\.joint.*joint_dim"):
        ModelConfig.from_dict({"joint": 3})


def test_build_model_rejects_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model(ModelConfig(), input_dim=F, vocab_size=1)
    with pytest.raises(ConfigError, match="input_dim"):
        build_model(ModelConfig(), input_dim=0, vocab_size=V)
    with pytest.raises(ConfigError, match="blank"):
        build_model(ModelConfig(), input_dim=F, vocab_size=V, blank=V)


# --- encoder building blocks -------------------------------------------------------------------


def test_reverse_index_reverses_within_length_and_is_an_involution() -> None:
    idx = reverse_index(torch.tensor([4, 2, 0]), 5)
    assert idx.tolist() == [[3, 2, 1, 0, 4], [1, 0, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert torch.equal(idx.gather(1, idx), torch.arange(5).expand(3, 5))


def test_stack_frames_concatenates_and_divides_lengths_rounding_up() -> None:
    feats = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    stacked, lengths = stack_frames(feats, torch.tensor([5, 3]), 2)
    assert stacked.shape == (2, 3, 4)
    assert stacked[0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]  # frames 0 and 1 side by side
    assert stacked[0, 2].tolist() == [8.0, 9.0, 0.0, 0.0]  # last group zero-padded
    assert lengths.tolist() == [3, 2]


@pytest.mark.parametrize("stack", [1, 2, 3])
def test_stream_stacker_gives_stack_frames_of_the_whole_stream_piece_by_piece(stack: int) -> None:
    frames = torch.randn(11, 4, generator=torch.Generator().manual_seed(0))
    stacker = StreamStacker(stack, 4)
    pieces = [stacker.push(frames[a:b]) for a, b in ((0, 1), (1, 1), (1, 5), (5, 10))]
    assert all(p.shape[1] == stack * 4 for p in pieces)
    pieces.append(stacker.push(frames[10:], final=True))  # the rest, the last group zero-padded
    whole, _ = stack_frames(frames[None], torch.tensor([11]), stack)  # (1, ceil(11/stack), 4s)
    assert torch.equal(torch.cat(pieces), whole[0])
    assert stacker.push(frames[:0], final=True).shape == (0, stack * 4)  # nothing left


@pytest.mark.parametrize("projection", [0, 3])
def test_peephole_cell_without_peepholes_equals_torch_lstm(projection: int) -> None:
    torch.manual_seed(0)
    cell = PeepholeLSTM(F, 5, projection)
    reference = nn.LSTM(F, 5, batch_first=True, proj_size=projection)
    with torch.no_grad():
        cell.peephole.zero_()
        reference.weight_ih_l0.copy_(cell.weight_ih)
        reference.weight_hh_l0.copy_(cell.weight_hh)
        reference.bias_ih_l0.copy_(cell.bias)
        reference.bias_hh_l0.zero_()
        if projection:
            reference.weight_hr_l0.copy_(cell.weight_hr)
    x = torch.randn(2, 9, F)
    torch.testing.assert_close(cell(x), reference(x)[0])


def test_peephole_weights_change_the_output() -> None:
    torch.manual_seed(0)
    cell = PeepholeLSTM(F, 5)
    x = torch.randn(2, 9, F)
    before = cell(x)
    with torch.no_grad():
        cell.peephole.add_(0.5)
    assert not torch.allclose(before, cell(x))


# --- shapes, strides, padding invariance -------------------------------------------------------


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_shapes_and_stride(name: str) -> None:
    config = ENCODERS[name]
    encoder = Encoder(config, F)
    feats, lengths = tiny_B3_T11_F6()
    out, out_lengths = encoder(feats, lengths)
    frames = math.ceil(11 / config.stack)
    assert out.shape == (3, frames, config.output_dim)
    assert encoder.output_stride == config.stack
    assert out_lengths.tolist() == [math.ceil(n / config.stack) for n in lengths.tolist()]
    assert out[2, out_lengths[2] :].abs().sum() == 0  # padding zeroed


@pytest.mark.parametrize("name", list(ENCODERS))
def test_batched_encoder_equals_per_utterance(name: str) -> None:
    torch.manual_seed(1)
    encoder = Encoder(ENCODERS[name], F).eval()
    feats, lengths = tiny_B3_T11_F6()
    out, out_lengths = encoder(feats, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_lengths = encoder(feats[b : b + 1, :n], lengths[b : b + 1])
        assert alone_lengths.item() == out_lengths[b].item()
        torch.testing.assert_close(out[b, : out_lengths[b]], alone[0], atol=1e-6, rtol=1e-5)


def test_encoder_rejects_wrong_feature_dim_and_lengths() -> None:
    encoder = Encoder(ENCODERS["lstm"], F)
    with pytest.raises(TensorInputError, match=r"\(B, T, 6\).*\(2, 5, 4\)"):
        encoder(torch.zeros(2, 5, 4), torch.tensor([5, 5]))
    with pytest.raises(TensorInputError, match="feat_lengths"):
        encoder(torch.zeros(2, 5, F), torch.tensor([6, 5]))


@pytest.mark.parametrize("name", ["blstm", "blstm_stack3", "peephole_projection_stack2"])
def test_model_kind_and_output_stride(name: str) -> None:
    stack = ENCODERS[name].stack
    for kind in ("ctc", "transducer"):
        model = make(kind, ENCODERS[name])
        assert model.kind == kind and model.output_stride == stack
    assert make("transducer", ENCODERS[name], joint_stride=2).output_stride == 2 * stack
    assert make("ctc", ENCODERS[name], joint_stride=2).output_stride == stack  # ignored by CTC
    lm = make("lm")
    assert lm.kind == "lm" and lm.output_stride == 1


@pytest.mark.parametrize("name", ["blstm", "blstm_stack3"])
def test_batched_ctc_log_probs_equal_per_utterance(name: str) -> None:
    model = make("ctc", ENCODERS[name])
    feats, lengths = tiny_B3_T11_F6()
    log_probs, out_lengths = model.log_probs(feats, lengths)
    assert log_probs.shape == (3, math.ceil(11 / ENCODERS[name].stack), V)
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    for b, n in enumerate(lengths.tolist()):
        alone, _ = model.log_probs(feats[b : b + 1, :n], lengths[b : b + 1])
        torch.testing.assert_close(log_probs[b, : out_lengths[b]], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("kind", "joint_stride"), [("ctc", 1), ("transducer", 1),
                                                    ("transducer", 2), ("transducer", 3)])
def test_batched_loss_equals_per_utterance(kind: str, joint_stride: int) -> None:
    model = make(kind, joint_stride=joint_stride)
    feats, lengths = tiny_B3_T11_F6()
    targets, target_lengths = tiny_targets_B3_U4()
    losses = model(feats, lengths, targets, target_lengths)
    assert losses.shape == (3,) and torch.isfinite(losses).all() and (losses > 0).all()
    for b, (n, u) in enumerate(zip(lengths.tolist(), target_lengths.tolist(), strict=True)):
        alone = model(
            feats[b : b + 1, :n],
            lengths[b : b + 1],
            targets[b : b + 1, :u],
            target_lengths[b : b + 1],
        )
        torch.testing.assert_close(losses[b : b + 1], alone, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("joint_stride", [1, 2])
def test_auxiliary_ctc_adds_the_scaled_ctc_loss_of_the_encoder_in_training_only(
    joint_stride: int,
) -> None:
    plain = make("transducer", ENCODERS["blstm_stack3"], joint_stride=joint_stride)
    torch.manual_seed(0)
    config = dataclasses.replace(plain.config, ctc_loss_scale=0.3)
    aux = build_model(config, input_dim=F, vocab_size=V)
    aux.load_state_dict(plain.state_dict(), strict=False)  # all but ctc_output
    ctc = make("ctc", ENCODERS["blstm_stack3"])  # the CTC model with aux's encoder and layer
    ctc.encoder.load_state_dict(aux.encoder.state_dict())
    ctc.output.load_state_dict(aux.ctc_output.state_dict())
    feats, lengths = tiny_B3_T11_F6()
    batch = (feats, lengths, *tiny_targets_B3_U4())
    # no dropout: train and eval mode differ only by the auxiliary term
    plain_loss, ctc_loss = plain.train()(*batch), ctc.eval()(*batch)
    assert torch.isfinite(ctc_loss).all() and (ctc_loss > 0).all()
    torch.testing.assert_close(aux.train()(*batch), plain_loss + 0.3 * ctc_loss)
    torch.testing.assert_close(aux.eval()(*batch), plain.eval()(*batch), rtol=0, atol=0)
    aux.train()(*batch).sum().backward()
    assert aux.ctc_output.weight.grad.abs().sum() > 0
    assert not hasattr(plain, "ctc_output")


def test_auxiliary_ctc_gives_no_loss_where_the_frames_are_too_few() -> None:
    torch.manual_seed(0)
    config = ModelConfig(kind="transducer", encoder=ENCODERS["blstm_stack3"],
                         predictor=PREDICTOR, joint_dim=9, ctc_loss_scale=1.0)
    aux = build_model(config, input_dim=F, vocab_size=V).train()
    plain = make("transducer", ENCODERS["blstm_stack3"]).train()
    plain.load_state_dict(aux.state_dict(), strict=False)
    # 9 frames stacked by 3 are 3 encoder outputs: CTC has no path for 4 labels through them,
    # the transducer does (several labels at one frame)
    feats = torch.randn(1, 9, F)
    batch = (feats, torch.tensor([9]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([4]))
    torch.testing.assert_close(aux(*batch), plain(*batch))
    aux(*batch).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in aux.parameters() if p.grad is not None)


def test_transducer_joint_broadcasts_to_T_by_U_plus_1() -> None:
    model = make("transducer")
    feats, lengths = tiny_B3_T11_F6()
    f, out_lengths = model.encode(feats, lengths)
    labels = torch.tensor([[0, 1, 2], [0, 3, 0], [0, 4, 5]])
    g, _ = model.predict(labels)
    assert f.shape == (3, 11, 16) and g.shape == (3, 3, 8)
    logits = model.joint(f.unsqueeze(2), g.unsqueeze(1))
    assert logits.shape == (3, 11, 3, V)
    one = model.joint(f[1, 4], g[1, 2])  # a single (t, u) pair, no broadcasting
    torch.testing.assert_close(logits[1, 4, 2], one)


def test_joint_stride_1_is_the_encoder_output_unchanged() -> None:
    model = make("transducer", ENCODERS["blstm_stack3"])
    assert ModelConfig().joint_stride == 1 and model.config.joint_stride == 1
    assert model.joint_f.in_features == model.encoder.output_dim and model.output_stride == 3
    feats, lengths = tiny_B3_T11_F6()
    f, out_lengths = model.encode(feats, lengths)
    h, enc_lengths = model.encoder(feats, lengths)
    assert torch.equal(f, h) and torch.equal(out_lengths, enc_lengths)


@pytest.mark.parametrize(("name", "joint_stride"), [("blstm", 2), ("blstm_stack3", 2),
                                                    ("lstm", 3)])
def test_joint_stride_concatenates_encoder_outputs_and_divides_lengths_rounding_up(
    name: str, joint_stride: int
) -> None:
    model = make("transducer", ENCODERS[name], joint_stride=joint_stride)
    stack = ENCODERS[name].stack
    assert model.output_stride == stack * joint_stride
    feats, lengths = tiny_B3_T11_F6()
    f, out_lengths = model.encode(feats, lengths)
    h, enc_lengths = model.encoder(feats, lengths)  # (B, T_enc, H)
    width = model.encoder.output_dim
    assert f.shape == (3, math.ceil(math.ceil(11 / stack) / joint_stride), joint_stride * width)
    assert f.shape[1] == math.ceil(11 / (stack * joint_stride))
    assert model.joint_f.in_features == joint_stride * width
    assert out_lengths.tolist() == [math.ceil(n / (stack * joint_stride)) for n in [11, 7, 2]]
    for b in range(3):
        for t in range(f.shape[1]):
            for k in range(joint_stride):  # slot k of frame t: encoder output j * t + k, or 0
                src = joint_stride * t + k
                expected = h[b, src] if src < int(enc_lengths[b]) else torch.zeros(width)
                assert torch.equal(f[b, t, k * width : (k + 1) * width], expected), (b, t, k)
    logits = model.joint(f.unsqueeze(2), model.predict(torch.zeros(3, 2, dtype=torch.long))[0]
                         .unsqueeze(1))
    assert logits.shape == (3, f.shape[1], 2, V)


def test_predictor_step_by_step_equals_whole_sequence() -> None:
    model = make("transducer")
    labels = torch.tensor([[0, 3, 1, 4]])
    whole, _ = model.predict(labels)
    state = None
    for u in range(labels.shape[1]):
        step, state = model.predict(labels[:, u : u + 1], state)
        torch.testing.assert_close(step[:, 0], whole[:, u])


def test_predictor_rejects_out_of_vocabulary_labels() -> None:
    with pytest.raises(TensorInputError, match=r"\[0, 7\)"):
        make("transducer").predict(torch.tensor([[0, 7]]))


def test_lm_nll_is_the_sum_of_next_label_log_probs_with_end_of_sequence() -> None:
    model = make("lm")
    targets, target_lengths = tiny_targets_B3_U4()
    nll = model(targets, target_lengths)
    log_probs = model.log_probs(targets, target_lengths)  # (B, U+1, V)
    # utterance 1: start -> 5 -> 6 -> end (blank)
    expected = -(log_probs[1, 0, 5] + log_probs[1, 1, 6] + log_probs[1, 2, 0])
    torch.testing.assert_close(nll[1], expected)
    alone = model(targets[1:2, :2], target_lengths[1:2])
    torch.testing.assert_close(nll[1:2], alone)


# --- training signal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [("ctc", "blstm"), ("ctc", "peephole_blstm"), ("transducer", "blstm_projection"),
     ("transducer_stride2", "blstm_stack3")],
)
def test_gradients_reach_every_parameter(kind: str, name: str) -> None:
    stride = 2 if kind.endswith("stride2") else 1
    model = make(kind.removesuffix("_stride2"), ENCODERS[name], joint_stride=stride).train()
    feats, lengths = tiny_B3_T11_F6()
    targets, target_lengths = tiny_targets_B3_U4()
    model(feats, lengths, targets, target_lengths).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def test_lm_gradients_reach_every_parameter() -> None:
    model = make("lm").train()
    model(*tiny_targets_B3_U4()).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("kind", "joint_stride"), [("ctc", 1), ("transducer", 1),
                                                    ("transducer", 2), ("lm", 1)])
def test_training_overfits_a_tiny_fixed_batch(kind: str, joint_stride: int) -> None:
    model = make(kind, joint_stride=joint_stride).train()
    feats, lengths = tiny_B3_T11_F6()
    targets, target_lengths = tiny_targets_B3_U4()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    history = []
    for _ in range(30):
        if kind == "lm":
            losses = model(targets, target_lengths)
        else:
            losses = model(feats, lengths, targets, target_lengths)
        assert losses.shape == (3,) and torch.isfinite(losses).all()
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        history.append(float(losses.detach().sum()))
    assert history[-1] < 0.5 * history[0], history
