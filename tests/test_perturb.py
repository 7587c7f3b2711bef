"""Feature perturbation (VTLP, speed, channel): each moves what it should and nothing else."""

from __future__ import annotations

import math

import pytest
import torch

from seqkit.audio.features import FeatureConfig, add_deltas, compute_features
from seqkit.audio.perturb import (
    Perturbation,
    apply_channel,
    channel_gain_db,
    mel_band_centers,
    perturb_static,
    stretch_time,
    warp_bands,
)
from seqkit.errors import ConfigError
from seqkit.training.config import TrainConfig

CENTERS = mel_band_centers(40, 20.0, 8000.0)


def test_band_centres_follow_the_mel_scale_between_the_edges():
    assert 20 < float(CENTERS[0]) < 100 and 7000 < float(CENTERS[-1]) < 8000
    mel = 1127 * torch.log1p(CENTERS / 700)
    assert torch.allclose(mel.diff(), mel.diff()[0].expand(39))


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_warp_moves_a_spectral_peak_by_alpha(alpha):
    bands = torch.full((3, 40), -5.0)
    bands[:, 20] = 5.0  # a formant near 1.9 kHz
    peak = float(CENTERS[warp_bands(bands, alpha, CENTERS)[0].argmax()])
    assert peak == pytest.approx(alpha * float(CENTERS[20]), rel=0.05)
    assert torch.equal(warp_bands(bands, 1.0, CENTERS), bands)


def test_speed_stretch_changes_the_frame_count_and_keeps_the_ends():
    feats = torch.arange(100.0).unsqueeze(1).repeat(1, 3)
    fast = stretch_time(feats, 1.25)
    assert fast.shape == (80, 3) and fast[0, 0] == 0 and fast[-1, 0] == 99
    assert stretch_time(feats, 0.8).shape == (125, 3)


def test_channel_is_a_smooth_gain_floored_at_the_noise_floor():
    gen = torch.Generator().manual_seed(0)
    gain = channel_gain_db(CENTERS, 10.0, None, gen)
    assert gain.abs().max() <= 10.0 and gain.diff().abs().max() < 3.0  # smooth across bands
    lowpassed = channel_gain_db(CENTERS, 0.0, 3400.0, gen)
    assert lowpassed[CENTERS < 3400].abs().max() == 0 and lowpassed[-1] < -20
    bands = torch.randn(50, 40)
    out = apply_channel(bands, torch.full((40,), -100.0))
    assert (out >= bands.min(dim=0).values - 3.0).all()  # never below the floor
    flat = apply_channel(bands, torch.zeros(40))
    assert torch.allclose(flat, bands, atol=0.06)  # a flat 0 dB channel changes little


def test_perturbed_utterance_keeps_the_feature_layout_and_is_reproducible():
    t = torch.arange(16000) / 16000
    wave = 0.1 * torch.sin(2 * math.pi * 180 * t) + 0.01 * torch.randn(16000)
    config = FeatureConfig()
    static = compute_features(wave, config)[:, :41]
    p = Perturbation(vtlp=0.1, speed=0.1, channel_db=10.0, lowpass_probability=1.0)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return perturb_static(static, p, CENTERS, energy=True, generator=gen)

    a = run(1)
    assert torch.equal(a, run(1)) and not torch.equal(a, run(2))
    assert 88 <= a.shape[0] <= 110 and a.shape[1] == 41 and torch.isfinite(a).all()
    assert add_deltas(a, config).shape == (a.shape[0], 123)
    assert torch.equal(perturb_static(static, Perturbation(), CENTERS, energy=True), static)


def test_out_of_range_perturbation_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="train.vtlp must be in"):
        TrainConfig(vtlp=0.7)
    with pytest.raises(ConfigError, match="lowpass_probability"):
        Perturbation(lowpass_probability=2.0)
