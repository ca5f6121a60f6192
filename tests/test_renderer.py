"""Phase-true output: STFT helpers, interaural phase channels, the mono renderer and the vocoder's IPD."""

from __future__ import annotations

import json

import _proc
import numpy as np
import pytest
import soundfile as sf
import torch

from binaural_core.interaural import band_ipd_to_bins, impose_ipd, phase_channels, split_phase
from binaural_core.mel import MelConfig, bin_frequencies, istft, mel_spectrogram, stft
from DiffBinaural.evaluation.metrics import active_frames, ild_series, itd_series
from DiffBinaural.inference.renderer import MODES, render, render_spectra

CFG = MelConfig()
SR = CFG.sampling_rate


def _noise(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def _delayed_pair(x: np.ndarray, k: int, right_gain: float = 1.0) -> torch.Tensor:
    """(2, S): left = x, right = x delayed by k samples (k < 0: left delayed) and scaled."""
    pad = abs(k)
    y = np.pad(x, (pad, pad))
    left = y[pad - max(-k, 0): len(y) - pad - max(-k, 0)]
    right = y[pad - max(k, 0): len(y) - pad - max(k, 0)] * right_gain
    return torch.from_numpy(np.stack([left, right]).astype(np.float32))


def _median_itd_ms(wav: np.ndarray) -> float:
    return float(np.median(itd_series(wav)[active_frames(wav)]))


# ---------------------------------------------------------------------------------------- STFT
def test_stft_is_the_mel_grid_and_istft_inverts_it_piecewise():
    x = torch.from_numpy(np.stack([_noise(seed=1), _noise(seed=2)]))[:, :30000]
    spec = stft(x, CFG)
    assert spec.shape == (2, CFG.n_fft // 2 + 1, 30000 // CFG.hop_size)
    # frame k of the STFT is mel frame k
    basis = torch.from_numpy(__import__("librosa").filters.mel(sr=SR, n_fft=1024, n_mels=80)).float()
    mel = torch.log(torch.clamp(basis @ torch.sqrt(spec.abs() ** 2 + 1e-9), min=1e-5))
    torch.testing.assert_close(mel, mel_spectrogram(x, CFG), atol=1e-4, rtol=0)
    torch.testing.assert_close(istft(spec, CFG, length=x.shape[-1]), x, atol=1e-5, rtol=0)
    # a piece of frames (with 4 frames of context) inverts to exactly those samples of the whole
    f0, f1 = 40, 90
    piece = stft(x, CFG, frames=(f0 - 4, f1 + 4))
    torch.testing.assert_close(piece, spec[..., f0 - 4:f1 + 4])
    y = istft(piece, CFG, length=(f1 - f0) * 256, frame_offset=f0 - 4, start=f0 * 256)
    torch.testing.assert_close(y, istft(spec, CFG, length=x.shape[-1])[:, f0 * 256:f1 * 256], atol=1e-6, rtol=0)
    # a signal given only in part: the frames it covers equal the whole signal's
    w0 = (f0 - 4) * 256 - 384
    part = stft(x[:, w0:(f1 + 4) * 256 + 640], CFG, frames=(f0 - 4, f1 + 4), offset=w0, total=x.shape[-1])
    torch.testing.assert_close(part, spec[..., f0 - 4:f1 + 4])
    with pytest.raises(ValueError, match="do not cover"):
        stft(x[:, w0 + 1000:], CFG, frames=(f0 - 4, f1), offset=w0 + 1000, total=x.shape[-1])


# ---------------------------------------------------------------------------------- phase channels
@pytest.mark.parametrize("k", [3, -5, 11])
def test_pure_delay_gives_linear_phase_and_coherence_one(k):
    pair = _delayed_pair(_noise(), k)
    phase = phase_channels(pair, CFG)
    assert phase.shape == (2, 80, pair.shape[-1] // 256)
    coherence = torch.sqrt(phase[0] ** 2 + phase[1] ** 2)
    assert coherence[:, 4:-4].mean() > 0.95 and coherence.max() <= 1.0 + 1e-5
    # IPD = phi_L - phi_R = +2 pi f k / sr for a right ear delayed by k samples (source on the left)
    ipd = band_ipd_to_bins(phase, CFG)[:, 4:-4]
    expected = torch.from_numpy(2 * np.pi * bin_frequencies(CFG) * k / SR).float()[:, None]
    err = torch.remainder(ipd - expected + torch.pi, 2 * torch.pi) - torch.pi
    assert err.abs().median() < 0.05
    # swapping the ears conjugates the channels
    torch.testing.assert_close(phase_channels(pair.flip(0), CFG), phase * torch.tensor([1.0, -1.0])[:, None, None])


def test_silence_and_incoherence_have_low_coherence():
    pair = torch.zeros(2, 16384)
    pair[0, 4096:] = torch.from_numpy(_noise(seconds=1))[:12288]
    pair[1, 8192:] = torch.from_numpy(_noise(seconds=1, seed=4))[:8192]  # independent noise: diffuse
    pair[1, :8192] += 1e-7 * torch.from_numpy(_noise(seconds=1, seed=5))[:8192]  # right ear nearly silent
    coherence = phase_channels(pair, CFG).pow(2).sum(0).sqrt()
    assert coherence[:, :12].max() < 1e-2  # silent, then one ear near silence (-120 dB): ~0 by the power floor
    assert coherence[:, 36:60].mean() < 0.6  # two independent noises: low coherence
    one = phase_channels(torch.stack([pair[0], pair[0] * 0.3]), CFG).pow(2).sum(0).sqrt()
    assert one[:, 20:60].min() > 0.99  # the same signal at another level: fully coherent


def test_split_phase_keeps_the_reference_phase():
    g = torch.Generator().manual_seed(0)
    a_l, a_r = torch.rand(100, generator=g) * 2, torch.rand(100, generator=g) * 2
    ipd = (torch.rand(100, generator=g) * 2 - 1) * 3
    alpha_l, alpha_r = split_phase(a_l, a_r, ipd)
    torch.testing.assert_close(torch.remainder(alpha_l - alpha_r - ipd + 1, 2 * torch.pi) - 1, torch.zeros(100),
                               atol=1e-5, rtol=0)
    total = a_l * torch.exp(1j * alpha_l) + a_r * torch.exp(1j * alpha_r)
    assert torch.angle(total).abs().max() < 1e-5


# -------------------------------------------------------------------------------------- renderer
@pytest.mark.parametrize("mode", ["free", "sum"])
def test_ideal_per_bin_gains_and_phases_reproduce_the_pair(mode):
    """Given per-bin ideal gains and IPD (no mel banding), L and R come back to numerical precision."""
    rng = np.random.default_rng(5)
    left = torch.from_numpy(np.convolve(_noise(seed=6), rng.standard_normal(9), "same").astype(np.float32))
    right = torch.from_numpy(np.convolve(_noise(seed=6), rng.standard_normal(13), "same").astype(np.float32))
    pair = torch.stack([left, right])
    mono = pair.mean(0)
    spec, m = stft(pair, CFG), stft(mono, CFG)
    gain_l, gain_r = spec[0].abs() / m.abs(), spec[1].abs() / m.abs()
    ipd = torch.angle(spec[0] * spec[1].conj())
    out = istft(render_spectra(m, gain_l, gain_r, ipd, mode=mode), CFG, length=pair.shape[-1])
    torch.testing.assert_close(out, pair, atol=2e-5, rtol=0)


def test_naive_symmetric_split_does_not_reproduce_unequal_ears():
    pair = _delayed_pair(_noise(), 4, right_gain=0.3)
    mono = pair.mean(0)
    spec, m = stft(pair, CFG), stft(mono, CFG)
    gains = spec.abs() / m.abs()
    ipd = torch.angle(spec[0] * spec[1].conj())
    out = istft(render_spectra(m, gains[0], gains[1], ipd, mode="symmetric"), CFG, length=pair.shape[-1])
    assert (out - pair).abs().max() > 0.01  # the reason "free" splits by the levels


@pytest.mark.parametrize("mode", MODES)
def test_swapped_prediction_swaps_the_ears(mode):
    pair = _delayed_pair(_noise(), 6, right_gain=0.5)
    mono = pair.mean(0)
    mels, phase = mel_spectrogram(pair, CFG), phase_channels(pair, CFG)
    out = render(mono, mels, CFG, phase=phase, mode=mode)
    swapped = render(mono, mels.flip(0), CFG, phase=phase * torch.tensor([1.0, -1.0])[:, None, None], mode=mode)
    torch.testing.assert_close(swapped, out.flip(0), atol=1e-5, rtol=0)
    assert ild_series(out.numpy()).mean() > 3 and ild_series(swapped.numpy()).mean() < -3
    assert out.shape == pair.shape


@pytest.mark.parametrize("k", [2, -4, 9])
def test_pure_delay_in_a_training_clip_comes_back_as_that_itd(tmp_path, k):
    """A training crop whose right ear is the left delayed by k samples: its phase channels, rendered
    from the crop's mono with its own mels, give that ITD within 0.02 ms (GCC-PHAT, as itd_error_ms)."""
    from DiffBinaural.dataset.real_binaural import RealBinauralDataset
    from DiffBinaural.dataset.synthetic import generate_dataset

    root = tmp_path / "d"
    generate_dataset(root, fmt="realbinaural", num_clips=3, seconds=2.0, seed=0, image_size=(64, 48),
                     split_fractions=(1.0, 0.0, 0.0), mono=False)
    name = (root / "splits" / "train.csv").read_text().split()[1]
    pair = _delayed_pair(_noise(seconds=2.0, seed=9), k, right_gain=0.7)
    sf.write(root / "processed" / "binaural_audios_22050Hz" / f"{name}.wav", pair.numpy().T, SR, subtype="FLOAT")
    ds = RealBinauralDataset(data_root=str(root), list_csv=str(root / "splits" / "train.csv"), split="train",
                             mel_cfg=CFG, segment_frames=64, num_frames=2, max_sources=1, image_size=16)
    item = ds[ds.names.index(name)]
    out = render(item["mono_audio"], item["binaural_mel"], CFG, phase=item["phase"]).numpy()
    truth = -k / SR * 1e3  # itd_series: t_left - t_right
    assert abs(_median_itd_ms(item["binaural_audio"].numpy()) - truth) < 0.02
    assert abs(_median_itd_ms(out) - truth) < 0.02
    no_phase = render(item["mono_audio"], item["binaural_mel"], CFG, phase=None).numpy()
    assert abs(_median_itd_ms(no_phase)) < 0.02  # without the phase channels: no ITD (the mono's)


def test_rendering_in_pieces_equals_one_pass():
    pair = _delayed_pair(_noise(seconds=2.0), 5, right_gain=0.6)
    mono = pair.mean(0)
    mels, phase = mel_spectrogram(pair, CFG), phase_channels(pair, CFG)
    whole = render(mono, mels, CFG, phase=phase)
    total, hop, pieces = mels.shape[-1], 256, []
    assert mono.shape[-1] % hop  # the last piece also covers the samples past the last full hop
    for f0 in range(0, total, 40):
        f1 = min(total, f0 + 40)
        m0, m1 = max(0, f0 - 4), min(total, f1 + 4)
        pieces.append(render(mono, mels[..., m0:m1], CFG, phase=phase[..., m0:m1], mel_offset=m0,
                             samples=(f0 * hop, mono.shape[-1] if f1 == total else f1 * hop)))
    out = torch.cat(pieces, 1)
    assert out.shape == whole.shape
    torch.testing.assert_close(out, whole, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="run past"):
        render(mono[:10000], mels, CFG)


def test_gains_are_bounded_where_the_mono_is_silent():
    mono = torch.from_numpy(_noise(seconds=1.0))
    mono[8000:16000] = 0.0
    mels = mel_spectrogram(torch.stack([mono, mono]), CFG)
    mels[:, :, 35:60] = 2.0  # a (wrong) loud prediction over the silent part
    out = render(mono, mels, CFG)
    assert out[:, 9000:15000].abs().max() < 1e-4


# -------------------------------------------------------------------------------- vocoder path
def test_impose_ipd_gives_independent_ears_the_predicted_itd():
    k = 7
    target = _delayed_pair(_noise(seed=3), k)
    ears = torch.stack([target[0], target[0] * 0.8])  # "vocoded": the right magnitude, no ITD
    assert abs(_median_itd_ms(ears.numpy())) < 0.02
    out = impose_ipd(ears, phase_channels(target, CFG), CFG)
    assert out.shape == ears.shape
    assert abs(_median_itd_ms(out.numpy()) - (-k / SR * 1e3)) < 0.02
    # each ear keeps its level (ILD of the vocoded pair, ~1.9 dB)
    assert abs(ild_series(out.numpy()).mean() - ild_series(ears.numpy()).mean()) < 0.3


def test_render_cli_output_and_one_line_errors(tmp_path):
    """render.py: stereo wavs of the mono's duration; a stale phase dir (no "phase" in meta.json) is
    ignored; a clip whose mels do not match its mono, or a missing phase file, is one error line."""
    import os
    import subprocess

    from binaural_core.mel_dir import write_clip, write_meta

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mono_dir, mels = tmp_path / "mono", tmp_path / "mels"
    mono_dir.mkdir()
    pair = _delayed_pair(_noise(seconds=1.0), 6, right_gain=0.5)
    sf.write(mono_dir / "a.wav", pair.mean(0).numpy(), SR, subtype="FLOAT")
    write_clip(str(mels), "test", "a", torch.cat([mel_spectrogram(pair, CFG), phase_channels(pair, CFG)]).numpy())
    write_meta(str(mels), mel_cfg=CFG, split="test", names=["a"], phase=True)

    def run(*extra):
        return subprocess.run([_proc.python(), "DiffBinaural/render.py", "--mel_dir", str(mels), "--split", "test",
                               "--mono_dir", str(mono_dir), "--output_dir", str(tmp_path / "out"), *extra],
                              capture_output=True, text=True, cwd=repo, timeout=120)

    proc = run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, sr = sf.read(tmp_path / "out" / "a.wav")
    assert sr == SR and out.shape == (pair.shape[-1], 2)
    assert abs(_median_itd_ms(out.T) - (-6 / SR * 1e3)) < 0.02  # the phase dir was used
    write_meta(str(mels), mel_cfg=CFG, split="test", names=["a"], phase=False)  # now a leftover
    assert run().returncode == 0
    assert abs(_median_itd_ms(sf.read(tmp_path / "out" / "a.wav")[0].T)) < 0.02
    write_meta(str(mels), mel_cfg=CFG, split="test", names=["a"], phase=True)
    os.remove(mels / "phase" / "test" / "a.npy")
    proc = run()
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "a.npy" in lines[0] and "phase file not found" in lines[0]
    sf.write(mono_dir / "a.wav", pair.mean(0).numpy()[:8000], SR, subtype="FLOAT")  # another clip's length
    proc = run("--no-phase")
    assert proc.returncode == 2 and "not the same clip" in proc.stderr and "Traceback" not in proc.stderr
    # the one mel-directory reader: render.py refuses an unknown format_version like the vocoder does
    meta = json.loads((mels / "meta.json").read_text())
    (mels / "meta.json").write_text(json.dumps({**meta, "format_version": 2}))
    proc = run("--no-phase")
    assert proc.returncode == 2 and "format_version 2: this code reads mel directories of version 1" in proc.stderr
