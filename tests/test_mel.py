"""The one mel space: parameters from the vocoder config, the transform, and the [-1, 1] pair."""

import json

import librosa
import numpy as np
import pytest
import torch

from binaural_core.audio import BadInputError
from binaural_core.mel import DEFAULT_CONFIG, MelConfig, mel_numpy, mel_spectrogram, num_frames
from DiffBinaural.model import NORM_MAX, NORM_MIN, denormalize_mel, normalize_mel

CFG = MelConfig.from_json(DEFAULT_CONFIG)


def _independent_mel(wav: np.ndarray, sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmax=None):
    """ln-mel written from the definition with numpy/librosa only (no torch.stft)."""
    pad = (n_fft - hop) // 2
    x = np.pad(wav.astype(np.float64), pad, mode="reflect")
    spec = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=False)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax, htk=False, norm="slaney")
    return np.log(np.maximum(basis @ mag, 1e-5))


def test_config_parameters_are_bigvgan_v2_22k():
    assert CFG == MelConfig(sampling_rate=22050, n_fft=1024, num_mels=80, hop_size=256, win_size=1024,
                            fmin=0, fmax=None)


def test_mel_matches_independent_computation():
    rng = np.random.default_rng(0)
    t = np.arange(22050 * 2) / 22050
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = mel_numpy(wav, CFG)
    ref = _independent_mel(wav)
    assert ours.shape == (80, wav.size // 256) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_a_wrong_parameter_would_be_caught():
    """The comparison above is sharp enough to see an fmax or hop change."""
    wav = np.random.default_rng(1).standard_normal(22050).astype(np.float32) * 0.1
    ours = mel_numpy(wav, CFG)
    assert np.abs(ours - _independent_mel(wav, fmax=8000)).max() > 1e-2
    wrong_hop = _independent_mel(wav, hop=240)[:, : ours.shape[1]]
    assert np.abs(ours - wrong_hop).max() > 1e-2


@pytest.mark.parametrize("samples", [1024, 8192, 8292, 20480, 22050])
def test_frame_count_is_samples_over_hop(samples):
    wav = torch.randn(samples) * 0.1
    assert mel_spectrogram(wav, CFG).shape == (80, samples // 256) == (80, num_frames(samples, CFG))


def test_batch_dims_and_channel_order_are_kept():
    left = torch.sin(torch.arange(20480) * 0.1) * 0.5
    right = torch.zeros(20480)
    mel = mel_spectrogram(torch.stack([torch.stack([left, right])] * 3), CFG)  # (3, 2, S)
    assert mel.shape == (3, 2, 80, 80)
    assert (mel[:, 0].max() > 0).item() and (mel[:, 1].max() < -11).item()  # loud left, silent right
    torch.testing.assert_close(mel[1, 0], mel_spectrogram(left, CFG))


@pytest.mark.parametrize("frames", [50, 64, 65, 130, 200])
def test_long_inputs_in_blocks_equal_one_pass(frames, monkeypatch):
    """Blocks of 64 frames (boundaries inside, at and one past a block) give the one-pass mel and the
    independent computation; a wrong block offset would shift or duplicate frames."""
    import binaural_core.mel as md

    wav = torch.randn(2, frames * 256 + 100, generator=torch.Generator().manual_seed(frames)) * 0.2
    whole = mel_spectrogram(wav, CFG)
    monkeypatch.setattr(md, "MEL_BLOCK_FRAMES", 64)
    blocked = mel_spectrogram(wav, CFG)
    assert blocked.shape == whole.shape == (2, 80, frames)
    torch.testing.assert_close(blocked, whole, atol=1e-5, rtol=0)
    np.testing.assert_allclose(blocked[1].numpy(), _independent_mel(wav[1].numpy()), atol=1e-5, rtol=0)


def test_matches_nvidia_bigvgan_oracle():
    oracle = pytest.importorskip("bigvgan.meldataset")
    wav = torch.randn(2, 16384) * 0.2
    ref = oracle.mel_spectrogram(wav, n_fft=1024, num_mels=80, sampling_rate=22050, hop_size=256,
                                 win_size=1024, fmin=0, fmax=None, center=False)
    torch.testing.assert_close(mel_spectrogram(wav, CFG), ref, atol=1e-5, rtol=0)


def test_normalize_roundtrip_and_range():
    x = torch.linspace(NORM_MIN, NORM_MAX, 101)
    y = normalize_mel(x)
    assert y.min().item() == pytest.approx(-1.0) and y.max().item() == pytest.approx(1.0)
    torch.testing.assert_close(denormalize_mel(y), x, atol=1e-5, rtol=0)
    # values outside the window are clamped, never mapped outside [-1, 1]
    assert normalize_mel(torch.tensor([-20.0, 10.0])).tolist() == [-1.0, 1.0]
    # ln(1e-5) (digital silence) maps inside the window, just above -1
    assert -1.0 < normalize_mel(torch.tensor(np.log(1e-5))).item() < -0.9


def test_config_from_json_and_mismatch(tmp_path):
    h = json.load(open(DEFAULT_CONFIG))
    assert CFG.mismatch(CFG.to_dict()) is None
    assert "hop_size" in CFG.mismatch({**CFG.to_dict(), "hop_size": 240})
    assert "fmax" in CFG.mismatch({**CFG.to_dict(), "fmax": 8000})
    del h["hop_size"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(h))
    with pytest.raises(BadInputError, match=r"bad\.json: missing mel key\(s\): hop_size"):
        MelConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="invalid JSON"):
        MelConfig.from_json(path)
