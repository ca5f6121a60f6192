"""Stage 2 discriminators and losses: shapes, official parameter names (and outputs, against NVIDIA's
code where it can be imported), LSGAN / feature-matching values, the multi-scale mel loss against the
official class and an independent librosa computation, the silence mask (and the original's bug),
the silence-aware weighting, and gradient flow."""

from __future__ import annotations

import importlib
import json
import math
import sys
import types

import librosa
import numpy as np
import pytest
import torch

from BigVGAN.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSubbandCQTDiscriminator,
    SincResample,
    build_discriminators,
)
from BigVGAN.loss import (
    GeneratorLoss,
    GeneratorLossConfig,
    MultiScaleMelSpectrogramLoss,
    discriminator_loss,
    feature_loss,
    frame_level_db,
    generator_loss,
    mel_l1_loss,
    silence_aware_mel_loss,
    silence_mask,
)
from binaural_core.audio import BadInputError
from binaural_core.mel import DEFAULT_CONFIG, MelConfig, mel_spectrogram

SR, HOP = 22050, 256
V2 = json.load(open(DEFAULT_CONFIG))  # the v2 22 kHz config: MPD + CQTD, multi-scale mel loss
MRD_RES = [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
# Narrow discriminators for the forward tests (names and shapes do not depend on the width).
SMALL = {
    **V2,
    "discriminator_channel_mult": 0.125,
    "mrd_channel_mult": 0.25,
    "cqtd_filters": 8,
    "resolutions": MRD_RES,
}
HAVE_NNAUDIO = importlib.util.find_spec("nnAudio") is not None


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: intra-op threads only add overhead, and thrash on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small() -> dict[str, torch.nn.Module]:
    """The three discriminators at small width, built once for the module."""
    discs = {"mpd": MultiPeriodDiscriminator(SMALL), "mrd": MultiResolutionDiscriminator(SMALL)}
    if HAVE_NNAUDIO:
        discs["cqtd"] = MultiScaleSubbandCQTDiscriminator(SMALL)
    return discs


def wave(b: int = 2, t: int = 8192, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(b, 1, t, generator=torch.Generator().manual_seed(seed)) * scale


# ------------------------------------------------------------------------------------------------
# Discriminators
# ------------------------------------------------------------------------------------------------
def _check_outputs(out, n_disc: int, n_fmaps: int, b: int = 2) -> None:
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = out
    assert len(y_d_rs) == len(y_d_gs) == len(fmap_rs) == len(fmap_gs) == n_disc
    for r, g, fr, fg in zip(*out):
        assert r.shape == g.shape and r.shape[0] == b and torch.isfinite(r).all()
        assert len(fr) == len(fg) == n_fmaps
        assert all(a.shape == c.shape and a.shape[0] == b for a, c in zip(fr, fg))


def test_mpd_and_mrd_output_shapes_and_counts(small):
    y, y_hat = wave(seed=0), wave(seed=1)
    with torch.no_grad():
        out = small["mpd"](y, y_hat)
    _check_outputs(out, 5, 6)
    for p, fmaps in zip((2, 3, 5, 7, 11), out[2]):
        assert fmaps[0].shape[-1] == p and fmaps[0].shape[1] == 4  # (B, 32·0.125, T/p/3, p)
    assert all(r.dim() == 2 for r in out[0])  # flattened logits
    with torch.no_grad():
        out = small["mrd"](y, y_hat)
    _check_outputs(out, 3, 6)
    # first feature map: (B, C, n_fft/2 + 1 bins, frames = T // hop)  (reflect pad (n_fft - hop)/2 per side)
    assert [tuple(f[0].shape[2:]) for f in out[2]] == [
        (513, 8192 // 120),
        (1025, 8192 // 240),
        (257, 8192 // 50),
    ]


@pytest.mark.skipif(not HAVE_NNAUDIO, reason="nnAudio not installed")
def test_cqtd_output_shapes_and_counts(small):
    with torch.no_grad():
        out = small["cqtd"](wave(seed=0), wave(seed=1))
    _check_outputs(out, 3, 5)  # 5 feature maps; the logits are not one
    for r, bins, hop in zip(out[0], (9 * 24, 9 * 36, 9 * 48), (512, 256, 256)):
        frames = 2 * 8192 // hop + 1  # CQT of the 2x-upsampled signal, centred frames
        assert r.shape == (2, 1, frames, math.ceil(math.ceil(math.ceil(bins / 2) / 2) / 2))


def _expected_keys(n_layers: list[int], spectral: bool) -> set[str]:
    """NVIDIA's naming: discriminators.{i}.convs.{j} and .conv_post, legacy weight norm (weight_g,
    weight_v) or legacy spectral norm (weight_orig, weight_u, weight_v), plus bias."""
    suffixes = (
        ("weight_orig", "weight_u", "weight_v", "bias") if spectral else ("weight_g", "weight_v", "bias")
    )
    keys = set()
    for i, n in enumerate(n_layers):
        for name in [f"convs.{j}" for j in range(n)] + ["conv_post"]:
            keys |= {f"discriminators.{i}.{name}.{s}" for s in suffixes}
    return keys


def test_parameter_names_follow_the_official_scheme():
    mpd = MultiPeriodDiscriminator(V2)  # full width: shapes of the official v2 MPD
    sd = mpd.state_dict()
    assert set(sd) == _expected_keys([5] * 5, spectral=False) and len(sd) == 90
    assert sum(p.numel() for p in mpd.parameters()) == 41_105_770  # = the official MPD (bigvgan.md §4)
    assert sd["discriminators.0.convs.0.weight_v"].shape == (32, 1, 5, 1)
    assert sd["discriminators.4.convs.3.weight_g"].shape == (1024, 1, 1, 1)
    assert sd["discriminators.2.conv_post.weight_v"].shape == (1, 1024, 3, 1)
    mrd = MultiResolutionDiscriminator({**V2, "resolutions": MRD_RES})
    assert set(mrd.state_dict()) == _expected_keys([5] * 3, spectral=False) and len(mrd.state_dict()) == 54
    assert sum(p.numel() for p in mrd.parameters()) == 280_902
    sn = MultiResolutionDiscriminator({**SMALL, "mrd_use_spectral_norm": True})
    assert set(sn.state_dict()) == _expected_keys([5] * 3, spectral=True)


@pytest.mark.skipif(not HAVE_NNAUDIO, reason="nnAudio not installed")
def test_cqtd_parameter_and_buffer_names_follow_the_official_scheme():
    sd = MultiScaleSubbandCQTDiscriminator(V2).state_dict()
    for i, bpo in enumerate((24, 36, 48)):
        p = f"discriminators.{i}."
        buffers = {
            p + f"cqt_transform.{b}"
            for b in ("lowpass_filter", "lenghts", "cqt_kernels_real", "cqt_kernels_imag")
        }
        plain = {
            p + f"{m}.{s}"
            for m in [f"conv_pres.{o}" for o in range(9)] + ["convs.0"]
            for s in ("weight", "bias")
        }
        normed = {
            p + f"{m}.{s}"
            for m in ["convs.1", "convs.2", "convs.3", "convs.4", "conv_post"]
            for s in ("weight_g", "weight_v", "bias")
        }
        assert {k for k in sd if k.startswith(p)} == buffers | plain | normed | {p + "resample.kernel"}
        assert sd[p + "cqt_transform.lenghts"].shape == (9 * bpo,)
        # torchaudio's Resample buffer for 2x upsampling: (new = 2, 1, 2 * width + orig), width 7
        assert sd[p + "resample.kernel"].shape == (2, 1, 15)
        assert sd[p + "convs.1.weight_v"].shape == (128, 128, 3, 9)
        assert sd[p + "conv_post.weight_v"].shape == (1, 128, 3, 3)
    assert len(sd) == 120


@pytest.fixture()
def official_discriminators(monkeypatch):
    """NVIDIA's ``bigvgan.discriminators``, importable without torchaudio: its two torchaudio names are
    stubbed (Resample by our SincResample, Spectrogram, used only by the MBD, by a dummy)."""
    pytest.importorskip("bigvgan.env")
    fake, transforms = types.ModuleType("torchaudio"), types.ModuleType("torchaudio.transforms")
    transforms.Resample = lambda orig_freq, new_freq: SincResample(orig_freq, new_freq)
    transforms.Spectrogram = type("Spectrogram", (torch.nn.Module,), {})
    fake.transforms = transforms
    monkeypatch.setitem(sys.modules, "torchaudio", fake)
    monkeypatch.setitem(sys.modules, "torchaudio.transforms", transforms)
    sys.modules.pop("bigvgan.discriminators", None)
    try:
        yield importlib.import_module("bigvgan.discriminators")
    finally:
        sys.modules.pop("bigvgan.discriminators", None)


def test_official_state_dicts_load_strictly_and_give_the_same_outputs(official_discriminators, small):
    from bigvgan.env import AttrDict

    od = official_discriminators
    pairs = [(od.MultiPeriodDiscriminator, small["mpd"]), (od.MultiResolutionDiscriminator, small["mrd"])]
    if HAVE_NNAUDIO:
        pairs.append((od.MultiScaleSubbandCQTDiscriminator, small["cqtd"]))
    y, y_hat = wave(b=1, t=4096, seed=2), wave(b=1, t=4096, seed=3)
    torch.manual_seed(0)
    for official_cls, ours in pairs:  # (ours: the module's small discriminators, re-weighted here)
        official = official_cls(AttrDict(dict(SMALL)))
        assert list(official.state_dict()) == list(ours.state_dict())
        ours.load_state_dict(official.state_dict(), strict=True)
        with torch.no_grad():
            for a, b in zip(official(y, y_hat), ours(y, y_hat)):
                flat_a = [t for x in a for t in (x if isinstance(x, list) else [x])]
                flat_b = [t for x in b for t in (x if isinstance(x, list) else [x])]
                assert len(flat_a) == len(flat_b)
                for ta, tb in zip(flat_a, flat_b):
                    torch.testing.assert_close(ta, tb, rtol=0, atol=0)


def test_sinc_resample_equals_the_direct_windowed_sinc_sum():
    """2x: y[m] = Σ_i x[i] · c · sinc(u) · cos²(π · clamp(u, ±6) / 12), u = c (i − m/2), c = 0.99."""
    x = torch.randn(1, 1, 300, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours = SincResample(SR, 2 * SR)
    assert ours.kernel.shape == (2, 1, 15) and ours.kernel.dtype == torch.float32
    got = ours(x.float()).double()[0, 0].numpy()
    c, lpw = 0.99, 6
    i = np.arange(300)[None, :]
    m = np.arange(600)[:, None]
    t = c * (i - m / 2)
    w = np.cos(np.pi * np.clip(t, -lpw, lpw) / (2 * lpw)) ** 2
    want = (c * np.sinc(t) * w) @ x[0, 0].numpy()
    assert got.shape == (600,)
    np.testing.assert_allclose(got, want, atol=2e-6)
    # and it interpolates a band-limited tone: the 44.1 kHz samples of the same sine (away from the edges)
    n = np.arange(4410)
    tone = torch.tensor(np.sin(2 * np.pi * 1000 * n / SR), dtype=torch.float32)
    up = ours(tone).numpy()
    exact = np.sin(2 * np.pi * 1000 * np.arange(8820) / (2 * SR))
    assert np.abs(up - exact)[200:-200].max() < 1e-2


def test_build_discriminators_follows_the_config(monkeypatch):
    d = build_discriminators({**SMALL, "use_cqtd_instead_of_mrd": False})
    assert list(d) == ["mpd", "mrd"] and isinstance(d["mrd"], MultiResolutionDiscriminator)
    if HAVE_NNAUDIO:
        assert isinstance(build_discriminators(SMALL)["mrd"], MultiScaleSubbandCQTDiscriminator)
    monkeypatch.setitem(sys.modules, "nnAudio.features.cqt", None)  # as if nnAudio were not installed
    with pytest.raises(BadInputError, match="pip install nnAudio.*use_cqtd_instead_of_mrd"):
        build_discriminators(SMALL)
    with pytest.raises(BadInputError, match="use_mbd_instead_of_mrd"):
        build_discriminators({**SMALL, "use_mbd_instead_of_mrd": True})
    no_second = {k: v for k, v in SMALL.items() if k != "resolutions"}
    with pytest.raises(BadInputError, match="resolutions"):
        build_discriminators({**no_second, "use_cqtd_instead_of_mrd": False})


# ------------------------------------------------------------------------------------------------
# Adversarial and feature losses
# ------------------------------------------------------------------------------------------------
def test_lsgan_losses_on_a_perfect_discriminator_and_on_hand_values():
    ones, zeros = [torch.ones(2, 5), torch.ones(3)], [torch.zeros(2, 5), torch.zeros(3)]
    total, r, g = discriminator_loss(ones, zeros)  # D(y) = 1, D(ŷ) = 0: perfect
    assert total.item() == 0.0 and r == [0.0, 0.0] and g == [0.0, 0.0]
    assert discriminator_loss(zeros, ones)[0].item() == 4.0  # 2 sub-discriminators × ((1-0)² + 1²)
    real, fake = [torch.tensor([0.5, 1.5])], [torch.tensor([0.5, -0.5])]
    total, r, g = discriminator_loss(real, fake)
    assert r == [0.25] and g == [0.25] and total.item() == 0.5  # mean(0.25, 0.25), mean(0.25, 0.25)
    assert generator_loss(ones)[0].item() == 0.0 and generator_loss(zeros)[0].item() == 2.0
    total, per = generator_loss([torch.tensor([0.0, 2.0, 3.0])])
    assert total.item() == pytest.approx((1 + 1 + 4) / 3) and len(per) == 1


def test_feature_loss_is_twice_the_mean_absolute_difference():
    f = [[torch.zeros(3), torch.ones(2, 2)], [torch.full((4,), 2.0)]]
    assert feature_loss(f, f).item() == 0.0
    g = [[torch.tensor([1.0, -1.0, 3.0]), torch.ones(2, 2)], [torch.full((4,), 1.5)]]
    assert feature_loss(f, g).item() == pytest.approx(2 * (5 / 3 + 0 + 0.5))


# ------------------------------------------------------------------------------------------------
# Mel losses
# ------------------------------------------------------------------------------------------------
def _reference_multiscale(y_hat: np.ndarray, y: np.ndarray) -> float:
    """Independent computation with librosa: centred reflect-padded STFT, periodic Hann, |STFT|,
    Slaney mel, log10(clamp 1e-5), mean |·| per scale, summed."""
    total = 0.0
    for m, w in zip((5, 10, 20, 40, 80, 160, 320), (32, 64, 128, 256, 512, 1024, 2048)):
        basis = librosa.filters.mel(sr=SR, n_fft=w, n_mels=m)
        logs = [
            np.log10(
                np.maximum(
                    basis
                    @ np.abs(
                        librosa.stft(
                            x, n_fft=w, hop_length=w // 4, window="hann", center=True, pad_mode="reflect"
                        )
                    ),
                    1e-5,
                )
            )
            for x in (y_hat, y)
        ]
        total += np.abs(logs[0] - logs[1]).mean()
    return total


def test_multiscale_mel_loss_zero_positive_and_equal_to_references():
    loss = MultiScaleMelSpectrogramLoss(SR)
    y, y_hat = wave(b=1, seed=5), wave(b=1, seed=6)
    assert loss(y, y).item() == 0.0
    value = loss(y_hat, y)
    assert value.item() > 0
    ref = _reference_multiscale(y_hat[:, 0].double().numpy(), y[:, 0].double().numpy())
    assert value.item() == pytest.approx(ref, rel=1e-4)
    try:
        official = importlib.import_module("bigvgan.loss").MultiScaleMelSpectrogramLoss(sampling_rate=SR)
    except ImportError:
        return
    torch.testing.assert_close(value, official(y_hat, y), rtol=1e-5, atol=1e-5)
    # channel-agnostic like the official: (B, 2, T) equals the folded (2B, 1, T)
    stereo = torch.cat([y_hat, y], dim=1)
    torch.testing.assert_close(
        loss(stereo, stereo.flip(1)), loss(stereo.reshape(2, 1, -1), stereo.flip(1).reshape(2, 1, -1))
    )


def test_single_scale_mel_loss_uses_the_project_mel():
    y, y_hat = wave(seed=7), wave(seed=8)
    cfg = MelConfig()
    want = (mel_spectrogram(y_hat[:, 0], cfg) - mel_spectrogram(y[:, 0], cfg)).abs().mean()
    assert (
        mel_l1_loss(y_hat, y, cfg).item() == pytest.approx(want.item())
        and mel_l1_loss(y, y, cfg).item() == 0.0
    )


# ------------------------------------------------------------------------------------------------
# Silence
# ------------------------------------------------------------------------------------------------
SEG = SR // 2  # 0.5 s = 11025 samples: not a multiple of the hop, so some frames straddle two segments


def _four_segments() -> tuple[torch.Tensor, np.ndarray]:
    """0.5 s tone at −6 dBFS RMS, digital silence, tone at −20 dBFS RMS, white noise at −70 dBFS RMS.
    Returns the (1, 1, 4·SEG) waveform and the per-segment 'silent' truth."""
    t = np.arange(SEG) / SR
    rng = np.random.default_rng(0)
    rms = lambda db: 10 ** (db / 20)  # noqa: E731
    parts = [
        math.sqrt(2) * rms(-6) * np.sin(2 * np.pi * 440 * t),
        np.zeros(SEG),
        math.sqrt(2) * rms(-20) * np.sin(2 * np.pi * 440 * t),
        rms(-70) * rng.standard_normal(SEG),
    ]
    return torch.tensor(np.concatenate(parts), dtype=torch.float32)[None, None], np.array([0, 1, 0, 1], bool)


def test_silence_mask_marks_exactly_the_silent_and_minus_70_db_frames():
    y, truth = _four_segments()
    mask = silence_mask(y, HOP, -50.0)[0].numpy()
    n = y.shape[-1] // HOP
    assert mask.shape == (n,)
    level = frame_level_db(y, HOP)[0].numpy()
    start, end = np.arange(n) * HOP, np.arange(1, n + 1) * HOP - 1
    inside = start // SEG == end // SEG  # frames that do not straddle a segment boundary
    assert inside.sum() >= n - 3
    np.testing.assert_array_equal(mask[inside], truth[start[inside] // SEG])
    seg_of = start // SEG
    assert np.abs(level[inside & (seg_of == 2)] + 20).max() < 0.5  # the −20 dB tone reads −20 dB
    assert np.abs(level[inside & (seg_of == 3)] + 70).max() < 1.5  # the −70 dB noise reads −70 dB
    assert (level[inside & (seg_of == 1)] == -120).all()  # digital silence: the −120 dB floor


def test_the_original_rule_on_the_ln_mel_marks_almost_everything_silent():
    """The original: silent ⇔ mean over bins of 20·log10(max(ln_mel, 1e-8)) < −50 dB. An ln-mel is mostly
    negative, so nearly every bin becomes −160 dB: the loud tones count as silent too (the bug)."""
    y, _ = _four_segments()
    ln_mel = mel_spectrogram(y[0, 0], MelConfig()).numpy()  # (80, frames), natural log of a magnitude
    original = (20 * np.log10(np.maximum(ln_mel, 1e-8))).mean(axis=0) < -50
    assert original.mean() > 0.95
    n_seg = SEG // HOP
    assert (
        original[1 : n_seg - 1].all() and original[2 * n_seg + 2 : 3 * n_seg - 1].all()
    )  # both tones 'silent'
    assert silence_mask(y, HOP)[0].float().mean() < 0.55  # ours: the two silent quarters only


def test_silence_aware_loss_weights_silent_frame_errors_more():
    mel = torch.zeros(1, 80, 4)
    silent = torch.tensor([[False, True, False, False]])
    err_loud, err_silent = mel.clone(), mel.clone()
    err_loud[..., 0] += 0.5
    err_silent[..., 1] += 0.5
    loud, quiet = (
        silence_aware_mel_loss(err_loud, mel, silent, 2.0),
        silence_aware_mel_loss(err_silent, mel, silent, 2.0),
    )
    assert quiet.item() == pytest.approx(2 * loud.item()) and loud.item() == pytest.approx(0.5 / 4)
    assert silence_aware_mel_loss(err_silent, mel, silent, 1.0) == silence_aware_mel_loss(
        err_loud, mel, silent, 1.0
    )
    # end to end: the same small perturbation costs more in the silent half than in the loud half
    y, _ = _four_segments()
    y = y[..., : 2 * SEG]  # loud tone, then silence
    h = {**V2, "use_silence_aware_loss": True}
    gl = GeneratorLoss(h, MelConfig())
    bump = 1e-3 * torch.randn(1, 1, HOP * 8, generator=torch.Generator().manual_seed(9))
    in_loud, in_silent = y.clone(), y.clone()
    in_loud[..., 10 * HOP : 18 * HOP] += bump
    in_silent[..., SEG + 10 * HOP : SEG + 18 * HOP] += bump
    _, parts_loud = gl(y, in_loud, {}, adversarial=False)
    _, parts_silent = gl(y, in_silent, {}, adversarial=False)
    assert parts_silent["silence_mel"] > parts_loud["silence_mel"]
    assert parts_loud["silent_fraction"].item() == pytest.approx(0.5, abs=0.02)


def test_generator_loss_config_reads_the_keys():
    c = GeneratorLossConfig.from_config(V2)
    assert (c.lambda_melloss, c.use_multiscale_melloss, c.use_silence_aware_loss) == (15.0, True, False)
    assert (c.silence_threshold_db, c.silence_weight, c.silence_loss_scale) == (-50.0, 2.0, 0.2)
    c = GeneratorLossConfig.from_config(
        {"silence_threshold_db": -60, "silence_weight": 3, "use_silence_aware_loss": True}
    )
    assert (c.silence_threshold_db, c.silence_weight, c.use_silence_aware_loss, c.lambda_melloss) == (
        -60.0,
        3.0,
        True,
        45.0,
    )
    with pytest.raises(ValueError, match="silence_weight"):
        GeneratorLossConfig.from_config({"silence_weight": 0.5})


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------
def _grad_ok(t: torch.Tensor) -> bool:
    return t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum().item() > 0


def test_gradients_flow_through_every_loss(small):
    y = wave(b=1, t=4096, seed=10)
    y[..., 2048:3072] = 0.0  # a silent stretch, so the silence term has silent frames
    y_hat = (y + 0.05 * wave(b=1, t=4096, seed=11)).requires_grad_(True)
    # discriminator step: gradients reach every discriminator parameter
    for d in small.values():
        d.zero_grad(set_to_none=True)
    loss_d = sum(discriminator_loss(*d(y, y_hat.detach())[:2])[0] for d in small.values())
    loss_d.backward()
    for key, d in small.items():
        for name, p in d.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (key, name)
    # generator step: each term on its own reaches ŷ
    feats = {k: d(y, y_hat) for k, d in small.items()}
    cfg = MelConfig()
    terms = {
        "adv": sum(generator_loss(f[1])[0] for f in feats.values()),
        "fm": sum(feature_loss(f[2], f[3]) for f in feats.values()),
        "multiscale": MultiScaleMelSpectrogramLoss(SR)(y_hat, y),
        "mel": mel_l1_loss(y_hat, y, cfg),
        "silence": silence_aware_mel_loss(
            mel_spectrogram(y_hat[:, 0], cfg), mel_spectrogram(y[:, 0], cfg), silence_mask(y, HOP), 2.0
        ),
    }
    for name, term in terms.items():
        y_hat.grad = None
        term.backward(retain_graph=True)
        assert _grad_ok(y_hat), name
    y_hat.grad = None
    total, parts = GeneratorLoss({**V2, "use_silence_aware_loss": True}, cfg)(y, y_hat, feats)
    total.backward()
    assert _grad_ok(y_hat)
    assert {"mel", "silence_mel", "silent_fraction", "adv_mpd", "fm_mpd", "adv_mrd", "fm_mrd"} <= set(parts)
    assert 0 < parts["silent_fraction"].item() < 1
