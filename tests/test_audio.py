"""Audio loading (formats, rates, channels, bad files), features, CMVN and SpecAugment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from seqkit.audio import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    load_audio,
    read_stats,
    spec_augment,
    write_stats,
)
from seqkit.errors import AudioError, ConfigError


def _tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: torch.Tensor, rate: int = 16000) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.numel()))
    return float(spectrum.abs().argmax()) * rate / wave.numel()


@pytest.mark.parametrize("rate", [44100, 8000, 22050])
def test_resampling_to_16k_keeps_a_tones_frequency(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    soundfile.write(path, _tone(1000.0, rate), rate, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.numel() - 8000) <= 1  # 0.5 s at 16 kHz
    assert abs(_peak_hz(wave) - 1000.0) <= 4.0
    assert 0.4 < float(wave.abs().max()) < 0.6  # amplitude kept


def test_stereo_is_mixed_to_mono_by_averaging(tmp_path):
    left = _tone(440.0, 16000, amplitude=0.4)
    right = _tone(1500.0, 16000, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wave = load_audio(path)
    torch.testing.assert_close(wave, torch.from_numpy((left + right) / 2))
    opposite = tmp_path / "opposite.wav"
    soundfile.write(opposite, np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    assert float(load_audio(opposite).abs().max()) == 0.0


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype", "tolerance"),
    [
        (".flac", "FLAC", "PCM_16", 1e-4),
        (".ogg", "OGG", "VORBIS", 0.05),  # lossy
        (".WAV", "NIST", "PCM_16", 1e-4),  # TIMIT's NIST SPHERE
        (".wav", "WAV", "PCM_24", 1e-6),
    ],
)
def test_common_formats_load_as_the_written_signal(tmp_path, suffix, fmt, subtype, tolerance):
    signal = _tone(300.0, 16000)
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, signal, 16000, format=fmt, subtype=subtype)
    wave = load_audio(path)
    assert wave.shape == (signal.size,)
    error = (wave - torch.from_numpy(signal)).abs()
    # Vorbis shifts and smears a little; compare energy-wise there, sample-wise elsewhere.
    if fmt == "OGG":
        assert abs(float(wave.pow(2).mean()) - float(np.mean(signal**2))) < tolerance
        assert abs(_peak_hz(wave) - 300.0) <= 4.0
    else:
        assert float(error.max()) < tolerance


def test_sphere_header_is_nist_as_timit_has_it(tmp_path):
    path = tmp_path / "SA1.WAV"
    soundfile.write(path, _tone(200.0, 16000), 16000, format="NIST", subtype="PCM_16")
    assert path.read_bytes()[:8] == b"NIST_1A\n"
    assert load_audio(path).numel() == 8000


def _bad_missing(tmp_path):
    return tmp_path / "missing.wav", "does not exist"


def _bad_directory(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    return tmp_path / "dir.wav", "is not a file"


def _bad_empty_samples(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    return path, "has no samples"


def _bad_zero_bytes(tmp_path):
    path = tmp_path / "zero.flac"
    path.write_bytes(b"")
    return path, "cannot read audio file"


def _bad_text(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("0 4800 she had your dark suit\n" * 20)
    return path, "cannot read audio file"


def _bad_truncated(tmp_path):
    path = tmp_path / "cut.flac"
    soundfile.write(path, _tone(300.0, 16000), 16000, format="FLAC")
    path.write_bytes(path.read_bytes()[:20])
    return path, "cannot read audio file"


BAD_FILES = [_bad_missing, _bad_directory, _bad_empty_samples, _bad_zero_bytes, _bad_text,
             _bad_truncated]


@pytest.mark.parametrize("make_bad", BAD_FILES, ids=[f.__name__[5:] for f in BAD_FILES])
def test_every_bad_audio_file_gives_an_audio_error_naming_it(tmp_path, make_bad):
    path, message = make_bad(tmp_path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    assert ":" in text.split(str(path), 1)[1]  # followed by what to do


@pytest.mark.parametrize(("kind", "dim"), [("fbank123", 123), ("fbank80", 80)])
def test_features_have_the_kinds_dimension_and_are_finite(kind, dim):
    config = FeatureConfig(kind=kind)
    assert config.dim == dim
    wave = torch.from_numpy(_tone(500.0, 16000, seconds=1.0))
    feats = compute_features(wave, config)
    assert feats.shape == (98, dim) and feats.dtype == torch.float32  # 1 + (16000-400)//160
    assert bool(torch.isfinite(feats).all())
    silent = compute_features(torch.zeros(4000), config)  # digital silence stays finite
    assert silent.shape == (23, dim) and bool(torch.isfinite(silent).all())


def test_fbank123_is_static_then_deltas_and_a_tone_peaks_in_its_mel_band():
    feats = compute_features(torch.from_numpy(_tone(1000.0, 16000, seconds=1.0)))
    static, delta, delta2 = feats[:, :41], feats[:, 41:82], feats[:, 82:]
    # Column 0 is log energy; a steady tone has near-zero deltas in the middle frames.
    middle = slice(10, -10)
    assert float(delta[middle].abs().max()) < 1e-3 and float(delta2[middle].abs().max()) < 1e-3
    loud = compute_features(torch.from_numpy(_tone(1000.0, 16000, seconds=1.0, amplitude=0.9)))
    assert float(loud[middle, 0].mean()) > float(static[middle, 0].mean())
    band = int(static[middle, 1:].mean(0).argmax())
    higher = compute_features(torch.from_numpy(_tone(3000.0, 16000, seconds=1.0)))
    assert int(higher[middle, 1:41].mean(0).argmax()) > band


@pytest.mark.parametrize("kind", ["fbank123", "fbank80"])
def test_cmn_cancels_a_fixed_channel_and_leaves_the_deltas(kind):
    """Per-utterance mean normalization: a gain or a fixed filter is a constant offset on each
    log-mel band, so the features do not change; without it they do."""
    rng = np.random.default_rng(0)
    speech = (_tone(300.0, 16000, 1.0) + _tone(1200.0, 16000, 1.0) * np.linspace(0, 1, 16000)
              + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    wave = torch.from_numpy(speech)
    tilted = torch.from_numpy(np.convolve(speech, [1.0, 0.6], mode="same").astype(np.float32))
    cmn, plain = FeatureConfig(kind=kind, cmn=True), FeatureConfig(kind=kind)
    feats = compute_features(wave, cmn)
    static = feats[:, : 41 if kind == "fbank123" else 80]
    assert float(static.mean(0).abs().max()) < 1e-4  # zero mean over the utterance
    louder = compute_features(wave * 4.0, cmn)
    assert torch.allclose(louder, feats, atol=2e-3)  # +12 dB: the same features
    assert not torch.allclose(compute_features(wave * 4.0, plain), compute_features(wave, plain),
                              atol=1.0)
    # A first-order filter is not exactly an offset per band, but nearly: far closer with CMN.
    moved_cmn = float((compute_features(tilted, cmn) - feats).abs().mean())
    moved_plain = float((compute_features(tilted, plain) - compute_features(wave, plain)).abs()
                        .mean())
    assert moved_cmn < 0.5 * moved_plain
    if kind == "fbank123":  # deltas see differences only: unchanged by the mean
        assert torch.allclose(feats[:, 41:], compute_features(wave, plain)[:, 41:], atol=1e-4)


def test_feature_config_rejects_bad_values_with_a_hint():
    with pytest.raises(ConfigError, match="choose one of fbank123, fbank80"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ConfigError, match="frame_shift_ms"):
        FeatureConfig(frame_shift_ms=30.0)
    with pytest.raises(ConfigError, match="n_mels"):
        FeatureConfig(n_mels=0)
    with pytest.raises(ConfigError, match="Nyquist"):
        FeatureConfig(high_freq=9000.0)
    with pytest.raises(ConfigError, match="cmn must be true or false"):
        FeatureConfig(cmn="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown feature option"):
        FeatureConfig.from_dict({"kind": "fbank80", "mels": 80})
    assert FeatureConfig(n_mels=64).dim == 195
    assert FeatureConfig(kind="fbank80", n_mels=64).dim == 64
    with pytest.raises(ConfigError, match="fewer than one"):
        compute_features(torch.zeros(100))
    with pytest.raises(ConfigError, match=r"mono waveform \(N,\)"):
        compute_features(torch.zeros(2, 16000))


def test_streamed_stats_equal_stats_of_all_frames_and_normalize_them():
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 7, generator=gen) * 3 + 100 for n in (5, 1, 50, 13)]
    stats = compute_stats(iter(chunks))
    frames = torch.cat(chunks).double()
    assert stats.frames == 69
    torch.testing.assert_close(stats.mean.double(), frames.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.std.double(), frames.std(0, unbiased=False), rtol=1e-5,
                               atol=1e-5)
    normalized = stats.normalize(torch.cat(chunks))
    torch.testing.assert_close(normalized.double().mean(0), torch.zeros(7, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(normalized.double().std(0, unbiased=False),
                               torch.ones(7, dtype=torch.float64), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="expected features"):
        stats.normalize(torch.zeros(3, 8))
    with pytest.raises(ConfigError, match="at least one frame"):
        compute_stats([])


def test_constant_feature_dimension_gets_a_floored_std():
    stats = compute_stats([torch.ones(10, 3)])
    assert bool((stats.std == FeatureStats.STD_FLOOR).all())
    assert bool(torch.isfinite(stats.normalize(torch.ones(2, 3))).all())


def test_stats_round_trip_through_json_file(tmp_path):
    config = FeatureConfig(kind="fbank80")
    stats = compute_stats([torch.randn(20, 80)])
    assert FeatureStats.from_dict(json.loads(json.dumps(stats.to_dict()))).frames == 20
    write_stats(tmp_path / "stats.json", config, stats)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temp file left
    loaded_config, loaded = read_stats(tmp_path / "stats.json")
    assert loaded_config == config
    torch.testing.assert_close(loaded.mean, stats.mean)
    torch.testing.assert_close(loaded.std, stats.std)
    with pytest.raises(ConfigError, match="run `seqkit data prepare`"):
        read_stats(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"features": config.to_dict(), "mean": [0.0]}))
    with pytest.raises(ConfigError, match="malformed feature statistics"):
        read_stats(tmp_path / "bad.json")


def test_spec_augment_masks_bands_and_runs_reproducibly():
    feats = torch.randn(200, 80) + 5  # no exact zeros before masking
    original = feats.clone()

    def run(seed: int) -> torch.Tensor:
        return spec_augment(feats, freq_masks=2, freq_width=10, time_masks=3, time_width=20,
                            generator=torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(feats, original)  # input untouched
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero = a == 0
    masked_cols = zero.all(dim=0)  # frequency masks span every frame
    masked_rows = zero.all(dim=1)  # time masks span every dimension
    assert int(masked_cols.sum()) <= 2 * 10 and int(masked_rows.sum()) <= 3 * 20
    # Every zero lies in a masked band or run, and everything else is the input.
    assert torch.equal(zero, masked_cols[None, :] | masked_rows[:, None])
    assert torch.equal(a[~zero], feats[~zero])
    masked_any = [run(s) for s in range(20)]
    assert any(bool((m == 0).any()) for m in masked_any)
    assert torch.equal(spec_augment(feats, freq_masks=0, time_masks=0), feats)
    with pytest.raises(ConfigError, match="time_width must be >= 0"):
        spec_augment(feats, time_width=-1)


def test_corruption_is_seeded_and_sets_the_drawn_gain_on_speech() -> None:
    from seqkit.audio.corruption import Corruption, corrupt, speech_level

    speech = np.concatenate([np.zeros(1600), _tone(300, 16000, 1.0).astype(np.float64),
                             np.zeros(1600)])
    segments = [(0, 1600, "h#"), (1600, 17600, "aa"), (17600, 19200, "h#")]
    always = Corruption(reverb_probability=1.0, gain_db=(-6.0, -6.0), snr_db=(10.0, 10.0))
    a = corrupt(np.random.default_rng(3), speech, segments, always)
    b = corrupt(np.random.default_rng(3), speech, segments, always)
    assert a.shape == speech.shape and np.array_equal(a, b)
    assert not np.array_equal(a, corrupt(np.random.default_rng(4), speech, segments, always))
    assert speech_level(a, segments) == pytest.approx(0.1 * 10 ** (-6 / 20))
    # the noise shows in the leading silence, about 10 dB (+ reverb tail) below the speech
    silence_db = 20 * np.log10(np.sqrt(np.mean(a[:1600] ** 2)) / speech_level(a, segments))
    assert -25.0 < silence_db < -5.0
