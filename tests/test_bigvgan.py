"""Stage 2: generator (against NVIDIA's bigvgan package as oracle), activation, losses, dataset, scripts."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import _proc
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from BigVGAN.activations import Activation1d, SnakeBeta, kaiser_sinc_filter1d, polyphase_activation
from BigVGAN.bigvgan import BigVGAN, load_config
from BigVGAN.loss import (
    MultiScaleMelSpectrogramLoss,
    discriminator_loss,
    feature_loss,
    generator_loss,
    silence_aware_mel_loss,
    silence_mask,
)
from BigVGAN.meldataset import BinauralMelDataset, scheduled_probability
from BigVGAN.packed_conv import Conv1d, ConvTranspose1d, packing_available
from binaural_core.audio import BadInputError
from binaural_core.mel import DEFAULT_CONFIG, MelConfig, mel_numpy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "BigVGAN", "configs", "bigvgan_tiny.json")
CFG = MelConfig()


@pytest.fixture(scope="module")
def full_pair():
    """Our full v2 generator and NVIDIA's, with the same random weights (Snake α/β randomised too)."""
    oracle = pytest.importorskip("bigvgan.bigvgan")
    from bigvgan.env import AttrDict

    h = load_config(DEFAULT_CONFIG)
    official = oracle.BigVGAN(AttrDict(json.load(open(DEFAULT_CONFIG))), use_cuda_kernel=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in official.state_dict().items():
            if k.endswith((".alpha", ".beta")):  # they start at 0 (log scale): randomise them
                v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    ours = BigVGAN(h)
    ours.load_state_dict(official.state_dict(), strict=True)
    return ours.eval(), official.eval()


def test_state_dict_keys_and_shapes_equal_the_official_ones(full_pair):
    """The same keys, in the same order, with the same shapes as NVIDIA's own v2 22 kHz generator (783
    tensors with weight norm: the layout of their published bigvgan_generator.pt)."""
    ours, official = full_pair
    expected = [(k, tuple(v.shape)) for k, v in official.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    assert got == expected and len(got) == 783


def test_kaiser_filter_taps_match_the_reference():
    taps = [0.0020290, 0.0093895, -0.0255435, -0.0576574, 0.1285726, 0.4432098,
            0.4432098, 0.1285726, -0.0576574, -0.0255435, 0.0093895, 0.0020290]
    np.testing.assert_allclose(kaiser_sinc_filter1d(0.25, 0.3, 12).view(-1).numpy(), taps, atol=1e-6)


def _official_activation(x: torch.Tensor, m: Activation1d) -> torch.Tensor:
    """The official formula written out independently: zero-stuffed x2 upsampling by a transposed
    convolution (replicate pad 5, crop 15 each side), Snake, replicate pad 5/6, 12-tap low-pass, stride 2."""
    c = x.shape[1]
    up = 2 * F.conv_transpose1d(F.pad(x, (5, 5), mode="replicate"), m.upsample.filter.expand(c, -1, -1),
                                stride=2, groups=c)[..., 15:-15]
    a, inv = m.act.coefficients()
    y = up + inv * torch.sin(a * up) ** 2
    return F.conv1d(F.pad(y, (5, 6), mode="replicate"), m.downsample.lowpass.filter.expand(c, -1, -1),
                    stride=2, groups=c)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 1001])
def test_activation_paths_equal_the_official_formula(length):
    """Eager chain, the polyphase formula in eager mode and its torch.compile'd form, values and grads."""
    torch.manual_seed(length)
    m = Activation1d(SnakeBeta(6, alpha_logscale=True))
    with torch.no_grad():
        m.act.alpha.normal_(0, 0.5)
        m.act.beta.normal_(0, 0.5)
    x = torch.randn(2, 6, length, requires_grad=True)
    ref = _official_activation(x, m)
    g_ref, = torch.autograd.grad(ref.sum(), x)
    a, inv = m.act.coefficients()
    f_up, f_dn = 2 * m.upsample.filter.view(-1), m.downsample.lowpass.filter.view(-1)
    torch.testing.assert_close(polyphase_activation(x, f_up, f_dn, a, inv), ref, atol=1e-5, rtol=0)
    for fused in (False, True):
        m.fused = fused
        out = m(x)
        assert out.shape == (2, 6, length)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
        g, = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=0)


def test_compiled_generator_equals_eager():
    g = BigVGAN(load_config(TINY))
    with torch.no_grad():
        for k, v in g.state_dict().items():
            if k.endswith((".alpha", ".beta")):
                v.copy_(torch.randn(v.shape) * 0.5)
        mel = torch.randn(2, 80, 9)
        eager = g(mel)
        fused = g.compile_activations()(mel)
    assert all(m.fused for m in g.modules() if isinstance(m, Activation1d))
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=0)


@pytest.mark.skipif(not packing_available(), reason="torch built without oneDNN")
def test_packed_transposed_convolution_equals_conv_transpose1d():
    torch.manual_seed(0)
    up = ConvTranspose1d(32, 16, 8, 4, padding=2)  # a BigVGAN x4 upsampling layer
    up.packed = True
    with torch.inference_mode():
        for shape in [(1, 32, 11), (2, 32, 40)]:
            x = torch.randn(shape)
            assert up._use_packed(x)
            torch.testing.assert_close(up(x), F.conv_transpose1d(x, up.weight, up.bias, stride=4, padding=2),
                                       atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not packing_available(), reason="torch built without oneDNN")
def test_packed_convolution_equals_conv1d_and_follows_weight_changes():
    torch.manual_seed(0)
    conv = Conv1d(16, 24, 7, dilation=3, padding=9)
    conv.packed = True
    with torch.inference_mode():
        for shape in [(1, 16, 50), (3, 16, 7), (2, 16, 300)]:  # one packed weight serves every input size
            x = torch.randn(shape)
            assert conv._use_packed(x)
            torch.testing.assert_close(conv(x), F.conv1d(x, conv.weight, conv.bias, padding=9, dilation=3),
                                       atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # in-place changes and loads: a cached packing must not be reused
        for change in (lambda: conv.weight.mul_(-2.0),
                       lambda: conv.load_state_dict({"weight": torch.randn(24, 16, 7), "bias": torch.zeros(24)})):
            change()
            torch.testing.assert_close(conv(x), F.conv1d(x, conv.weight, conv.bias, padding=9, dilation=3),
                                       atol=1e-5, rtol=1e-5)
    # a packed layer can be deep-copied (the opaque packed weight is rebuilt, not copied)
    twin = copy.deepcopy(conv)
    assert twin._cache is None and conv._cache is not None
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), conv(x))
    # training is untouched: with autograd the plain convolution runs and gradients flow
    x = torch.randn(2, 16, 20, requires_grad=True)
    assert not conv._use_packed(x)
    conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_pack_convolutions_only_after_weight_norm_removal():
    g = BigVGAN(load_config(TINY)).eval()
    mel = torch.randn(2, 80, 9)
    with torch.inference_mode():
        ref = g(mel)
        g.pack_convolutions()
        torch.testing.assert_close(g(mel), ref, atol=1e-5, rtol=0)  # weight norm on: the plain path
        assert all(m._cache is None for m in g.modules() if isinstance(m, (Conv1d, ConvTranspose1d)))
        g.remove_weight_norm()
        torch.testing.assert_close(g(mel), ref, atol=1e-5, rtol=0)
    convs = [m for m in g.modules() if isinstance(m, (Conv1d, ConvTranspose1d))]
    assert len(convs) == 2 + len(g.ups) + sum(len(b.convs1) + len(b.convs2) for b in g.resblocks)
    assert all(m._cache is not None for m in convs) == packing_available()  # every layer ran packed


def test_same_output_as_nvidia_before_and_after_removing_weight_norm(full_pair):
    ours, official = full_pair
    mel = torch.randn(1, 80, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(mel), official(mel), atol=1e-5, rtol=0)
        a, b = copy.deepcopy(ours), copy.deepcopy(official)
        a.remove_weight_norm()
        b.remove_weight_norm()
        assert "conv_pre.weight" in a.state_dict() and "conv_pre.weight_g" not in a.state_dict()
        torch.testing.assert_close(a(mel), b(mel), atol=1e-5, rtol=0)
        # the fast inference path (pre-packed oneDNN convolutions + fused activations), as --compile runs it
        a.pack_convolutions().compile_activations()
        torch.testing.assert_close(a(mel), b(mel), atol=1e-5, rtol=0)


def test_our_checkpoint_loads_strictly_into_nvidia_code(full_pair, tmp_path):
    ours, _ = full_pair
    oracle = pytest.importorskip("bigvgan.bigvgan")
    from bigvgan.env import AttrDict

    torch.save({"generator": ours.state_dict()}, tmp_path / "g_00000001")
    official = oracle.BigVGAN(AttrDict(json.load(open(DEFAULT_CONFIG))), use_cuda_kernel=False)
    official.load_state_dict(torch.load(tmp_path / "g_00000001", weights_only=True)["generator"], strict=True)
    assert all(k.endswith(("weight_g", "weight_v")) for k in ours.state_dict() if "weight" in k and "conv" in k)


def test_tiny_generator_shapes_and_range():
    h = load_config(TINY)
    g = BigVGAN(h)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(50)  # drive the output beyond [-1, 1]: it must be clamped (use_tanh_at_final false)
        y = g(torch.randn(3, 80, 20))
    assert y.shape == (3, 1, 20 * 256) and y.abs().max() <= 1.0


def test_multiscale_mel_loss_equals_nvidia():
    oracle = pytest.importorskip("bigvgan.loss")
    g = torch.Generator().manual_seed(0)
    y, y_hat = torch.randn(2, 1, 8192, generator=g) * 0.3, torch.randn(2, 1, 8192, generator=g) * 0.3
    ours = MultiScaleMelSpectrogramLoss(22050)
    ref = oracle.MultiScaleMelSpectrogramLoss(sampling_rate=22050)
    torch.testing.assert_close(ours(y_hat, y), ref(y_hat, y), atol=1e-4, rtol=1e-5)
    assert ours(y, y).item() == 0.0


def test_gan_and_feature_losses_on_hand_values():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros)[0].item() == 0.0  # perfect discriminator
    assert discriminator_loss(zeros, ones)[0].item() == 2.0  # (1-0)^2 + 1^2
    assert generator_loss(ones)[0].item() == 0.0 and generator_loss(zeros)[0].item() == 1.0
    f = [[torch.zeros(3), torch.ones(2)]]
    assert feature_loss(f, f).item() == 0.0
    assert feature_loss(f, [[torch.ones(3), torch.ones(2)]]).item() == 2.0  # 2 * mean|0 - 1|


def test_silence_mask_marks_exactly_the_quiet_frames():
    sr, hop = 22050, 256
    seg = (sr // 2) // hop * hop
    t = np.arange(seg) / sr
    rng = np.random.default_rng(0)
    parts = [0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(seg),            # loud tone, digital silence
             0.1 * np.sin(2 * np.pi * 440 * t),                           # -23 dBFS RMS tone: not silent
             10 ** (-70 / 20) * rng.standard_normal(seg)]                 # -70 dBFS noise: silent
    y = torch.tensor(np.concatenate(parts), dtype=torch.float32)[None, None]
    mask = silence_mask(y, hop, -50.0)[0].numpy()
    n = seg // hop
    expected = np.concatenate([np.zeros(n), np.ones(n), np.zeros(n), np.ones(n)]).astype(bool)
    assert (mask == expected).all()
    # The original's rule: mean over bins of 20*log10(max(ln-mel, 1e-8)) < -50 dB marks almost all frames
    # silent, the loud tone included, because an ln-mel is mostly negative (clamped to 1e-8 -> -160 dB).
    ln_mel = mel_numpy(y[0, 0].numpy(), CFG)
    original = (20 * np.log10(np.maximum(ln_mel, 1e-8))).mean(axis=0) < -50
    assert original.mean() > 0.95 and original[: n - 2].all()
    # the silence-aware term weights an error on a silent frame more than the same error on a loud one
    mel = torch.zeros(1, 80, 4)
    silent = torch.tensor([[False, True, False, False]])
    err_loud, err_silent = mel.clone(), mel.clone()
    err_loud[..., 0] += 1.0
    err_silent[..., 1] += 1.0
    assert silence_aware_mel_loss(err_silent, mel, silent, 2.0) == 2 * silence_aware_mel_loss(err_loud, mel, silent, 2.0)


def test_scheduled_sampling_probability_follows_the_original():
    points = [(10, 0.0), (30, 0.5), (60, 0.9), (60, 1.0)]
    got = [scheduled_probability(e, points) for e in (0, 9, 10, 20, 30, 45, 59, 60, 100)]
    np.testing.assert_allclose(got, [0, 0, 0, 0.25, 0.5, 0.7, 0.5 + 0.4 * 29 / 30, 1.0, 1.0])


def _audio_dir(tmp_path, n=3, seconds=1.0):
    d = tmp_path / "audio"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(d / f"c{i}.wav", (rng.standard_normal((int(22050 * seconds), 2)) * 0.1).astype(np.float32), 22050,
                 subtype="FLOAT")
    return d


def _mel_dir(tmp_path, audio, meta_mel=None):
    root = tmp_path / "mels"
    for side, ch in (("left", 0), ("right", 1)):
        (root / side / "train").mkdir(parents=True)
        for wav in sorted(audio.glob("*.wav")):
            x, _ = sf.read(wav, dtype="float32")
            np.save(root / side / "train" / f"{wav.stem}.npy", mel_numpy(x[:, ch], CFG) + 0.5)  # "predicted"
    (root / "meta.json").write_text(json.dumps({"format_version": 1, "mel": meta_mel or CFG.to_dict()}))
    return root


def test_vocoder_dataset_alignment_channels_and_sources(tmp_path):
    audio = _audio_dir(tmp_path)
    mels = _mel_dir(tmp_path, audio)
    gt = BinauralMelDataset(audio_dir=str(audio), cfg=CFG, segment_size=4096, seed=0)
    pred = BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=(str(mels / "left" / "train"),
                              str(mels / "right" / "train")), segment_size=4096, p_pred=1.0)
    assert len(gt) == 6  # 3 clips x 2 ears
    for ds, offset in ((gt, 0.0), (pred, 0.5)):
        for i in range(len(ds)):
            item = ds[i]
            wav, _ = sf.read(audio / f"{item['name']}.wav", dtype="float32")
            ch = i % 2
            assert item["channel"] == ch and item["mel"].shape == (80, 16) and item["audio"].shape == (1, 4096)
            full = wav[:, ch]
            start = next(s for s in range(len(full) // 256) if np.array_equal(full[s * 256:s * 256 + 4096],
                                                                                item["audio"][0].numpy()))
            expected = mel_numpy(full, CFG)[:, start:start + 16] + offset  # frame k <-> samples [k*hop, ...)
            np.testing.assert_allclose(item["mel"].numpy(), expected, atol=1e-4)
    # scheduled sampling: p = 0.5 mixes both sources
    pred.set_epoch(0, 0.5)
    used = [pred[i]["used_pred"] for i in range(len(pred))] + [(pred.set_epoch(1, 0.5), pred[0]["used_pred"])[1]]
    assert 0 < sum(used) < len(used)


def test_vocoder_dataset_refuses_bad_mel_dirs(tmp_path):
    audio = _audio_dir(tmp_path)
    mels = _mel_dir(tmp_path, audio, meta_mel={**CFG.to_dict(), "hop_size": 240})
    dirs = (str(mels / "left" / "train"), str(mels / "right" / "train"))
    with pytest.raises(BadInputError, match="meta.json: mel parameters differ from the vocoder config: hop_size"):
        BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=dirs)
    # one reader checks the format version too (tests/test_bigvgan.py is the vocoder's side of it)
    (mels / "meta.json").write_text(json.dumps({"format_version": 2, "mel": CFG.to_dict()}))
    with pytest.raises(BadInputError, match=r"meta.json: format_version 2: this code reads mel directories of version 1"):
        BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=dirs)
    (mels / "meta.json").write_text(json.dumps({"mel": CFG.to_dict()}))
    with pytest.raises(BadInputError, match=r"format_version None"):
        BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=dirs)
    (mels / "meta.json").write_text(json.dumps({"format_version": 1, "mel": CFG.to_dict()}))
    os.remove(mels / "right" / "train" / "c1.npy")
    with pytest.raises(BadInputError, match="left and right mel dirs hold different clips"):
        BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=dirs)
    np.save(mels / "right" / "train" / "c1.npy", np.full((80, 86), np.nan, np.float32))
    with pytest.raises(BadInputError, match=r"c1\.npy: mel contains NaN"):
        BinauralMelDataset(audio_dir=str(audio), cfg=CFG, pred_dirs=dirs)


def _script(name, *args, timeout=300):
    return subprocess.run([_proc.python(), os.path.join(REPO, "BigVGAN", name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_both_scripts_train_two_steps_then_resume(tmp_path):
    audio = _audio_dir(tmp_path, n=2)
    mels = _mel_dir(tmp_path, audio)
    common = ["--config", TINY, "--audio_dir", audio, "--batch_size_per_gpu", 2, "--workers", 0, "--num_val", 1,
              "--segment_size", 4096, "--summary_interval", 1]
    ck = tmp_path / "ck_mel"
    r = _script("train_binaural_mel.py", *common, "--checkpoint_path", ck, "--max_steps", 2,
                "--mel_left_train_dir", mels / "left" / "train", "--mel_right_train_dir", mels / "right" / "train")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (ck / "g_00000002").is_file() and (ck / "do_00000002").is_file() and (ck / "config.json").is_file()
    g = torch.load(ck / "g_00000002", weights_only=True)
    assert set(g) == {"generator"}
    do = torch.load(ck / "do_00000002", weights_only=True)
    assert {"mpd", "mrd", "optim_g", "optim_d", "steps", "epoch"} <= set(do) and do["steps"] == 2
    r = _script("train_binaural_mel.py", *common, "--checkpoint_path", ck, "--max_steps", 3,
                "--mel_left_train_dir", mels / "left" / "train", "--mel_right_train_dir", mels / "right" / "train")
    assert r.returncode == 0 and "resumed from" in r.stderr and (ck / "g_00000003").is_file(), r.stderr[-3000:]
    # scheduled sampling, starting from the first run's generator
    ck2 = tmp_path / "ck_both"
    r = _script("train_binaural_both.py", *common, "--checkpoint_path", ck2, "--max_steps", 2,
                "--mel_pred_left_dir", mels / "left" / "train", "--mel_pred_right_dir", mels / "right" / "train",
                "--use_scheduled_sampling", "--ss_schedule", "0:0.5 1:1", "--pretrained", ck / "g_00000003")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generator initialised from" in r.stderr and (ck2 / "g_00000002").is_file()
    # a bad schedule is one line
    r = _script("train_binaural_both.py", *common, "--checkpoint_path", ck2, "--mel_pred_left_dir", mels / "left" / "train",
                "--mel_pred_right_dir", mels / "right" / "train", "--ss_schedule", "10:2")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--ss_schedule" in r.stderr
    # inference: mel dirs -> stereo wavs of frames * hop samples
    out = tmp_path / "wavs"
    r = _script("inference.py", "--checkpoint_file", ck / "g_00000003", "--mel_left_dir", mels / "left" / "train",
                "--mel_right_dir", mels / "right" / "train", "--output_dir", out, "--no-pack")
    assert r.returncode == 0, r.stderr[-3000:]
    wav, sr = sf.read(out / "c0.wav")
    assert sr == 22050 and wav.shape == (np.load(mels / "left" / "train" / "c0.npy").shape[1] * 256, 2)
    # the fast path (--compile: fused activations, with the default --pack: pre-packed convolutions)
    # writes the same wavs, to 1 LSB of 16-bit PCM
    r = _script("inference.py", "--checkpoint_file", ck / "g_00000003", "--mel_left_dir", mels / "left" / "train",
                "--mel_right_dir", mels / "right" / "train", "--output_dir", tmp_path / "wavs_compiled", "--compile")
    assert r.returncode == 0, r.stderr[-3000:]
    fused, _ = sf.read(tmp_path / "wavs_compiled" / "c0.wav", dtype="int16")
    assert np.abs(fused.astype(int) - sf.read(out / "c0.wav", dtype="int16")[0].astype(int)).max() <= 1


def test_vocoder_split_lists_keep_numeric_names(tmp_path):
    """The copy that drifted: the vocoder read split CSVs without dtype=str, so 000001 became 1.wav. It
    now uses the one split-list reader of both stages (CSV, FAIR-Play .h5, .txt)."""
    from BigVGAN.trainer import read_names

    (tmp_path / "split.csv").write_text("name\n000001\n000010\n")
    (tmp_path / "split.txt").write_text("000001\n000010.wav\n")
    assert read_names(str(tmp_path / "split.csv")) == read_names(str(tmp_path / "split.txt")) == ["000001", "000010"]
    assert read_names(None) is None
