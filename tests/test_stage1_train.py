"""Stage 1 training loop, checkpoints, DDP and whole-clip inference, on tiny models and synthetic data."""

from __future__ import annotations

import json
import os
import subprocess

import _proc
import numpy as np
import pytest
import torch
from conftest import MICRO

from binaural_core.checkpoint import safe_load
from binaural_core.mel import MelConfig, mel_numpy
from DiffBinaural.dataset.synthetic import generate_dataset
from DiffBinaural.model import load_stage1
from DiffBinaural.training.trainer import run
from DiffBinaural.utils.arguments import inference_parser, train_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [*MICRO, "--steps", "3", "--workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, fmt="realbinaural", num_clips=8, seconds=1.5, seed=3, image_size=(96, 54),
                     split_fractions=(0.6, 0.2, 0.2))
    return root


def _train_args(data, ckpt, *extra):
    return train_parser("t").parse_args([
        "--id", "run", "--data_root", str(data), "--ckpt", str(ckpt),
        "--list_train", str(data / "splits" / "train.csv"), "--list_val", str(data / "splits" / "val.csv"),
        "--batch_size_per_gpu", "2", "--num_epoch", "50", "--eval_epoch", "50", "--disp_iter", "1", "--num_vis", "1", *TINY, *extra,
    ])


def _weights(ckpt):
    return safe_load(os.path.join(ckpt, "run", "state_latest.pth"))


def test_resume_continues_exactly(data, tmp_path):
    """Stopping after 2 steps and resuming to 5 gives the weights of an uninterrupted 5-step run."""
    run(_train_args(data, tmp_path / "a", "--max_steps", "5"), dataset_kind="realbinaural")
    run(_train_args(data, tmp_path / "b", "--max_steps", "2"), dataset_kind="realbinaural")
    assert _weights(tmp_path / "b")["step"] == 2
    run(_train_args(data, tmp_path / "b", "--max_steps", "5", "--resume"), dataset_kind="realbinaural")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a["step"] == b["step"] == 5 and a["epoch"] == b["epoch"] and a["batch_in_epoch"] == b["batch_in_epoch"]
    for part in ("model", "ema"):
        sa, sb = (a[part], b[part]) if part == "model" else (a[part]["module"], b[part]["module"])
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{part}.{k} differs after resume"
    # the optimizer state continued too (AdamW step counts)
    assert a["opt"]["state"][0]["step"] == b["opt"]["state"][0]["step"] == 5
    # a run that did not resume but restarted from scratch would differ
    run(_train_args(data, tmp_path / "c", "--max_steps", "3"), dataset_kind="realbinaural")
    c = _weights(tmp_path / "c")
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_checkpoint_files_rebuild_the_model(data, tmp_path):
    run(_train_args(data, tmp_path, "--max_steps", "2"), dataset_kind="realbinaural")
    run_dir = tmp_path / "run"
    for name in ("config.json", "unet_latest.pth", "frame_latest.pth", "unet_best.pth", "frame_best.pth",
                 "state_latest.pth"):
        assert (run_dir / name).is_file(), name
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["unet_channels"] == 16 and cfg["mel"]["hop_size"] == 256
    assert cfg["box_source"] == "detections"  # the synthetic RealBinaural set has boxes: inference asks for them
    model, _ = load_stage1(str(run_dir))
    ema = _weights(tmp_path)["ema"]["module"]
    for k, v in model.unet.state_dict().items():
        assert torch.equal(v, ema[f"unet.{k}"]), k  # *_best.pth holds the EMA weights
    # an unknown key in config.json stops with one line naming the file
    cfg["not_a_key"] = 1
    (run_dir / "config.json").write_text(json.dumps(cfg))
    from binaural_core.audio import BadInputError

    with pytest.raises(BadInputError, match=r"config\.json: unknown config key\(s\): not_a_key"):
        load_stage1(str(run_dir))


def test_two_cpu_workers_stay_in_sync(data, tmp_path):
    """--num_gpus 2 on a CPU machine: 2 gloo workers; the trainer checks the replicas at every save."""
    cmd = [_proc.python(), os.path.join(REPO, "DiffBinaural", "train_realBinaural.py"),
           *map(str, ["--id", "run", "--data_root", data, "--ckpt", tmp_path, "--num_gpus", 2,
                      "--list_train", data / "splits" / "train.csv", "--list_val", data / "splits" / "val.csv",
                      "--batch_size_per_gpu", 1, "--max_steps", 4, "--save_every", 2, "--num_epoch", 50,
                      "--eval_epoch", 50, *TINY])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = _weights(tmp_path)
    assert state["world_size"] == 2 and state["step"] == 4 and len(state["rng"]) == 2
    # the two ranks drew different diffusion noise (seeded by rank), yet kept equal weights
    assert not torch.equal(state["rng"][0]["diffusion"], state["rng"][1]["diffusion"])


def test_a_worker_frees_its_training_loop_before_the_process_group(monkeypatch):
    """The trainers sit in reference cycles; a rank must free its loop (and the DDP wrapper holding the
    process group) before destroy_process_group, or the group dies in interpreter shutdown, where gloo's
    threads abort the process now and then (SIGABRT after a finished 2-rank run)."""
    import gc
    import weakref

    from binaural_core import distributed as du
    from binaural_core import runtime

    refs, alive_at_cleanup = [], []

    class Loop:
        def __init__(self) -> None:
            self.me = self  # a reference cycle, as the trainers have

        def fit(self) -> None:
            pass

    def build(args, device):
        loop = Loop()
        refs.append(weakref.ref(loop))
        return loop

    monkeypatch.setattr(du, "setup", lambda: torch.device("cpu"))
    monkeypatch.setattr(du, "barrier", lambda: None)
    monkeypatch.setattr(du, "cleanup", lambda: alive_at_cleanup.append(refs[0]() is not None))
    enabled = gc.isenabled()
    gc.disable()  # no automatic collection may hide a leftover cycle
    try:
        runtime._worker(None, build=build)
    finally:
        if enabled:
            gc.enable()
    assert alive_at_cleanup == [False]


def test_test_script_writes_full_length_mels(data, tmp_path):
    run(_train_args(data, tmp_path, "--max_steps", "1"), dataset_kind="realbinaural")
    from DiffBinaural.inference.stage1 import run_inference

    common = ["--id", "run", "--data_root", str(data), "--ckpt", str(tmp_path),
              "--list_test", str(data / "splits" / "test.csv"), "--window_hop", "12", *TINY]
    run_inference(inference_parser("t").parse_args([*common, "--output_dir", str(tmp_path / "pred")]), "realbinaural")
    run_inference(inference_parser("t").parse_args([*common, "--mode", "gt", "--output_dir", str(tmp_path / "gt")]),
                  "realbinaural")
    cfg = MelConfig()
    names = [n.strip() for n in (data / "splits" / "test.csv").read_text().splitlines()[1:]]
    import soundfile as sf

    for name in names:
        wav, sr = sf.read(data / "processed" / "binaural_audios_22050Hz" / f"{name}.wav", dtype="float32")
        frames = wav.shape[0] // 256
        for ch, side in enumerate(("left", "right")):
            pred = np.load(tmp_path / "pred" / side / "test" / f"{name}.npy")
            gt = np.load(tmp_path / "gt" / side / "test" / f"{name}.npy")
            assert pred.shape == gt.shape == (80, frames) and pred.dtype == np.float32
            assert np.isfinite(pred).all() and (pred[:, :8] != 0).any() and (pred[:, -8:] != 0).any()
            np.testing.assert_allclose(gt, mel_numpy(wav[:, ch], cfg), atol=1e-4)  # gt = mel of that ear
    meta = json.loads((tmp_path / "pred" / "meta.json").read_text())
    assert meta["mel"] == cfg.to_dict() and meta["sampler"] == "ddim" and meta["steps"] == 3
    assert meta["num_clips"] == len(names) and meta["format_version"] == 1

    # seedable: the same flags give the same mels; another sampler/guidance gives other mels
    run_inference(inference_parser("t").parse_args([*common, "--output_dir", str(tmp_path / "again")]), "realbinaural")
    run_inference(inference_parser("t").parse_args([*common, "--output_dir", str(tmp_path / "dpm"), "--sampler",
                                               "dpmsolver++", "--guidance_scale", "2"]), "realbinaural")
    for name in names:
        first = np.load(tmp_path / "pred" / "left" / "test" / f"{name}.npy")
        assert np.array_equal(first, np.load(tmp_path / "again" / "left" / "test" / f"{name}.npy"))
        assert not np.array_equal(first, np.load(tmp_path / "dpm" / "left" / "test" / f"{name}.npy"))
    assert json.loads((tmp_path / "dpm" / "meta.json").read_text())["guidance_scale"] == 2.0


@pytest.mark.parametrize("target,scale", [("binaural", 2.0), ("residual", 2.0), ("residual", 6.0)])
def test_diffusion_target_round_trip(target, scale):
    from DiffBinaural.model import from_target, to_target

    g = torch.Generator().manual_seed(0)
    binaural = torch.rand(2, 2, 8, 12, generator=g) * 2 - 1
    mono = binaural.mean(dim=1, keepdim=True)
    x0 = to_target(binaural, mono, target, residual_scale=scale)
    torch.testing.assert_close(from_target(x0, mono, target, residual_scale=scale), binaural)
    if target == "residual":
        torch.testing.assert_close(x0, (binaural - mono) * scale)
        # the mono-copy prediction is x0 = 0, and left/right keep their order
        torch.testing.assert_close(from_target(torch.zeros_like(x0), mono, target, residual_scale=scale),
                                   mono.expand_as(binaural))
        assert torch.equal(to_target(binaural.flip(1), mono, target, residual_scale=scale), x0.flip(1))


def test_sampler_clip_bound_follows_the_residual_scale():
    """The sampler clamps x0 to [-r, r]: 1 for mels, scale/2 for a residual (the same ±3.6 nats at any
    scale), and the first release's scale 2 keeps the old bound of 1."""
    from types import SimpleNamespace

    from DiffBinaural.model import build_sampler, clip_range

    opts = SimpleNamespace(sampler="ddim", steps=2, eta=0.0, guidance_scale=1.0)
    cfg = {"num_train_timesteps": 1000, "prediction_type": "sample", "loss": "l1", "p_drop_visual": 0.1,
           "p_drop_mono": 0.1, "target": "residual", "residual_scale": 6.0}
    assert clip_range(cfg) == 3.0 and clip_range({**cfg, "residual_scale": 2.0}) == 1.0
    assert clip_range({**cfg, "target": "binaural"}) == 1.0

    class Big(torch.nn.Module):  # predicts x0 = 5 everywhere
        def forward(self, x, t, **kw):
            return torch.full_like(x, 5.0)

    out = build_sampler(cfg, opts).sample(Big(), (1, 2, 4, 4), model_kwargs={}, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full_like(out, 3.0))


def test_fairplay_layout_trains_and_dumps_with_resnet18(tmp_path):
    """FAIR-Play: h5 split lists, 16 kHz wavs resampled on load, grid tokens of the whole frame (the default
    there) from a trainable ResNet-18's feature map."""
    from DiffBinaural.inference.stage1 import run_inference

    root = tmp_path / "fp"
    generate_dataset(root, fmt="fairplay", num_clips=4, seconds=1.5, seed=1, image_size=(96, 54))
    split = root / "splits" / "split1"
    args = train_parser("t").parse_args([
        "--id", "run", "--data_root", str(root), "--ckpt", str(tmp_path / "ck"), "--list_train",
        str(split / "train.h5"), "--list_val", str(split / "val.h5"), "--batch_size_per_gpu", "1", "--max_steps", "2",
        "--arch_frame", "resnet18", "--pretrained_frame", "none", *TINY])
    run(args, dataset_kind="fairplay")
    state = _weights(tmp_path / "ck")
    assert state["step"] == 2
    cfg = json.loads((tmp_path / "ck" / "run" / "config.json").read_text())
    assert cfg["arch_frame"] == "resnet18" and cfg["pretrained_frame"] is None
    # 96 x 54 frames: the short side max(img_size, 64), the aspect kept; 4 rows of cells, 7 columns
    assert cfg["visual_tokens"] == "grid" and cfg["frame_size"] == [64, 112] and cfg["grid"] == [4, 7]
    # the backbone is trainable: its weights moved
    first = state["model"]["encoder.backbone.embedder.embedder.convolution.weight"]
    model, _ = load_stage1(str(tmp_path / "ck" / "run"), weights_frame=str(tmp_path / "ck" / "run" / "frame_latest.pth"))
    assert model.encoder.backbone.embedder.embedder.convolution.weight.requires_grad is True
    assert first.shape == model.encoder.backbone.embedder.embedder.convolution.weight.shape
    run_inference(inference_parser("t").parse_args([
        "--id", "run", "--data_root", str(root), "--ckpt", str(tmp_path / "ck"), "--list_test", str(split / "test.h5"),
        "--output_dir", str(tmp_path / "mels"), *TINY]), "fairplay")
    (name,) = [p.stem for p in (tmp_path / "mels" / "left" / "test").glob("*.npy")]
    mel = np.load(tmp_path / "mels" / "right" / "test" / f"{name}.npy")
    assert mel.shape == (80, int(1.5 * 22050) // 256)  # 16 kHz file, mel at 22050 Hz


@pytest.mark.parametrize("target,prediction", [("binaural", "epsilon"), ("residual", "sample"),
                                               ("residual", "v_prediction")])
def test_interaural_phase_trains_validates_and_dumps(data, tmp_path, target, prediction):
    """--interaural_phase: 4 diffusion channels, a phase error in validation, a phase dir in the dump."""
    from binaural_core.interaural import phase_channels
    from DiffBinaural.inference.stage1 import run_inference
    from DiffBinaural.utils.validation import validate

    run(_train_args(data, tmp_path, "--max_steps", "2", "--interaural_phase", "--target", target,
                    "--prediction_type", prediction), dataset_kind="realbinaural")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["interaural_phase"] is True
    model, cfg = load_stage1(str(tmp_path / "run"))
    assert model.unet.out[-1].out_channels == 4
    from DiffBinaural.dataset import build_dataset
    from DiffBinaural.model import build_sampler

    args = _train_args(data, tmp_path, "--interaural_phase")
    val = build_dataset("realbinaural", args, list_path=args.list_val, split="val")
    metrics, _ = validate(model, build_sampler(cfg, args), val, device=torch.device("cpu"),
                          batch_size=2, seed=0)
    assert 0 < metrics["val/baseline_phase_error"] <= np.pi and np.isfinite(metrics["val/phase_error"])
    # the baseline's error is that of the true phase against 0: recompute it from the items
    from DiffBinaural.utils.validation import phase_errors

    gt = torch.stack([val[i]["phase"] for i in range(len(val))])
    err, w = phase_errors(None, gt)
    assert abs(float(err.sum() / w.sum()) - metrics["val/baseline_phase_error"]) < 1e-4
    err, w = phase_errors(gt, gt)
    assert float(err.sum()) < 1e-3  # a perfect prediction has no phase error
    assert "val/phase_error" in (tmp_path / "run" / "train.log").read_text()
    common = ["--id", "run", "--data_root", str(data), "--ckpt", str(tmp_path), "--list_test",
              str(data / "splits" / "test.csv"), *TINY]
    for mode in ("test", "gt"):
        run_inference(inference_parser("t").parse_args([*common, "--mode", mode, "--output_dir", str(tmp_path / mode)]),
                      "realbinaural")
        assert json.loads((tmp_path / mode / "meta.json").read_text())["phase"]["dir"] == "phase"
    import soundfile as sf

    for name in [n.strip() for n in (data / "splits" / "test.csv").read_text().splitlines()[1:]]:
        pred = np.load(tmp_path / "test" / "phase" / "test" / f"{name}.npy")
        gt = np.load(tmp_path / "gt" / "phase" / "test" / f"{name}.npy")
        wav, _ = sf.read(data / "processed" / "binaural_audios_22050Hz" / f"{name}.wav", dtype="float32")
        assert pred.shape == gt.shape == (2, 80, wav.shape[0] // 256) and np.abs(pred).max() <= 1.0
        expected = phase_channels(torch.from_numpy(wav.T.copy()), MelConfig()).numpy()
        np.testing.assert_allclose(gt, expected, atol=1e-4)  # gt = the phase channels of the binaural file


def test_checkpoints_without_phase_channels_load_and_render(data, tmp_path):
    """A run saved before --interaural_phase existed (no key in config.json) loads, dumps no phase dir,
    and its mels render with the mono renderer (IPD 0)."""
    from DiffBinaural.inference.renderer import render
    from DiffBinaural.inference.stage1 import run_inference

    run(_train_args(data, tmp_path, "--max_steps", "1"), dataset_kind="realbinaural")
    path = tmp_path / "run" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["interaural_phase"], cfg["residual_scale"]
    path.write_text(json.dumps(cfg))
    model, cfg = load_stage1(str(tmp_path / "run"))
    assert cfg["interaural_phase"] is False and model.unet.out[-1].out_channels == 2
    assert cfg["residual_scale"] == 2.0  # the first release's fixed factor
    run_inference(inference_parser("t").parse_args([
        "--id", "run", "--data_root", str(data), "--ckpt", str(tmp_path), "--list_test",
        str(data / "splits" / "test.csv"), "--output_dir", str(tmp_path / "mels"), *TINY]), "realbinaural")
    assert not (tmp_path / "mels" / "phase").exists()
    assert "phase" not in json.loads((tmp_path / "mels" / "meta.json").read_text())
    name = (data / "splits" / "test.csv").read_text().split()[1]
    import soundfile as sf

    mono, _ = sf.read(data / "processed" / "mono_audios_22050Hz" / f"{name}.wav", dtype="float32")
    mels = torch.from_numpy(np.stack([np.load(tmp_path / "mels" / s / "test" / f"{name}.npy") for s in ("left", "right")]))
    out = render(torch.from_numpy(mono), mels, MelConfig())
    assert out.shape == (2, len(mono)) and torch.isfinite(out).all()


@pytest.mark.parametrize("target", ["binaural", "residual"])
def test_diffusion_target_with_phase_channels(target):
    from DiffBinaural.model import from_target, to_target

    g = torch.Generator().manual_seed(1)
    binaural = torch.rand(2, 2, 8, 12, generator=g) * 2 - 1
    phase = torch.rand(2, 2, 8, 12, generator=g) * 2 - 1
    mono = binaural.mean(dim=1, keepdim=True)
    x0 = to_target(binaural, mono, target, phase)
    assert x0.shape == (2, 4, 8, 12) and torch.equal(x0[:, 2:], phase)  # phase channels pass through unscaled
    torch.testing.assert_close(from_target(x0, mono, target), torch.cat([binaural, phase], 1))


def test_a_clips_noise_comes_from_its_name_not_its_place_in_the_list(data, tmp_path):
    """The same clip gets the same mels whether it is listed alone, first or last."""
    from DiffBinaural.inference.stage1 import run_inference

    run(_train_args(data, tmp_path, "--max_steps", "1"), dataset_kind="realbinaural")
    names = [n.strip() for n in (data / "splits" / "test.csv").read_text().splitlines()[1:]]
    assert len(names) >= 2
    lists = {"all": names, "reversed": names[::-1], "alone": names[-1:]}
    for key, members in lists.items():
        (tmp_path / f"{key}.txt").write_text("\n".join(members) + "\n")
        run_inference(inference_parser("t").parse_args([
            "--id", "run", "--data_root", str(data), "--ckpt", str(tmp_path), "--list_test", str(tmp_path / f"{key}.txt"),
            "--output_dir", str(tmp_path / key), *TINY]), "realbinaural")
    for name in names:
        first = np.load(tmp_path / "all" / "left" / "test" / f"{name}.npy")
        assert np.array_equal(first, np.load(tmp_path / "reversed" / "left" / "test" / f"{name}.npy")), name
    last = names[-1]
    assert np.array_equal(np.load(tmp_path / "alone" / "right" / "test" / f"{last}.npy"),
                          np.load(tmp_path / "all" / "right" / "test" / f"{last}.npy"))
    other = np.load(tmp_path / "all" / "left" / "test" / f"{names[0]}.npy")
    assert not np.array_equal(other, np.load(tmp_path / "all" / "left" / "test" / f"{last}.npy"))


def test_validation_on_several_ranks_counts_every_clip_once(data, tmp_path, monkeypatch):
    """3 validation clips on 2 ranks: rank 0 takes 2, rank 1 takes 1 (a DistributedSampler would pad rank 1
    with a repeat, counted twice), and the count-weighted means equal the single-process result exactly."""
    from DiffBinaural.dataset import build_dataset
    from DiffBinaural.model import build_sampler
    from DiffBinaural.utils import validation

    run(_train_args(data, tmp_path, "--max_steps", "1"), dataset_kind="realbinaural")
    model, cfg = load_stage1(str(tmp_path / "run"))
    args = _train_args(data, tmp_path)
    (tmp_path / "val3.txt").write_text("\n".join(
        [n.strip() for n in (data / "splits" / "train.csv").read_text().splitlines()[1:]][:3]) + "\n")
    val = build_dataset("realbinaural", args, list_path=str(tmp_path / "val3.txt"), split="val")
    assert len(val) == 3
    sampler = build_sampler(cfg, args)

    def once(batch_size):
        return validation.validate(model, sampler, val, device=torch.device("cpu"), batch_size=batch_size, seed=0)[0]

    single = once(2)
    assert once(3) == pytest.approx(single, rel=1e-5)  # nor does the batch size (float rounding aside)
    shards = []
    for rank in (0, 1):  # each rank alone, the all-reduce left out: its own sums over its own clips
        monkeypatch.setattr(validation.du, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(validation.du, "get_world_size", lambda: 2)
        shards.append(once(2))
    key = "val/mel_distance" if "val/mel_distance" in single else sorted(single)[0]
    combined = (2 * shards[0][key] + 1 * shards[1][key]) / 3
    assert combined == pytest.approx(single[key], rel=1e-6)


def test_fewer_epochs_than_eval_epoch_still_validates_and_a_never_validated_run_loads_its_latest(data, tmp_path):
    """A new user's first run: --num_epoch 1 with --eval_epoch 5 ends validated (best weights exist), and
    a run folder without best weights (never validated) is sampled from its latest weights, said in one line."""
    import logging

    from DiffBinaural.inference.stage1 import run_inference

    run(_train_args(data, tmp_path, "--num_epoch", "1", "--eval_epoch", "5"), dataset_kind="realbinaural")
    run_dir = tmp_path / "run"
    assert (run_dir / "unet_best.pth").is_file() and (run_dir / "unet_latest.pth").is_file()
    assert "best val mel distance inf" not in (run_dir / "train.log").read_text()
    for part in ("unet", "frame"):
        os.remove(run_dir / f"{part}_best.pth")
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("DiffBinaural").addHandler(handler)
    try:
        run_inference(inference_parser("t").parse_args([
            "--id", "run", "--data_root", str(data), "--ckpt", str(tmp_path), "--list_test",
            str(data / "splits" / "test.csv"), "--output_dir", str(tmp_path / "mels"), *TINY]), "realbinaural")
    finally:
        logging.getLogger("DiffBinaural").removeHandler(handler)
    said = [m for m in messages if "never validated" in m]
    assert len(said) == 1 and said[0].endswith("using unet_latest.pth and frame_latest.pth"), said
    meta = json.loads((tmp_path / "mels" / "meta.json").read_text())
    assert meta["checkpoint"].endswith("unet_latest.pth")


def test_learning_rate_schedules():
    """step: x decay_factor at each lr_decay_epochs boundary; cosine: 1 -> 0.5 at mid-run -> ~0 at the
    last of --max_steps (or of the epochs' steps when they end sooner), after a linear warm-up."""
    from types import SimpleNamespace

    from DiffBinaural.training.trainer import Stage1Trainer

    def factor(step, **flags):
        args = SimpleNamespace(**{"warmup_steps": 0, "lr_schedule": "step", "decay_factor": 0.5, "lr_decay_epochs": 2,
                                  "num_epoch": 100, "max_steps": 0, **flags})
        fake = SimpleNamespace(args=args, steps_per_epoch=10)
        fake.total_steps = lambda: Stage1Trainer.total_steps(fake)
        return Stage1Trainer._lr_factor(fake, step)

    assert [factor(s) for s in (0, 19, 20, 39, 40)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert factor(4, warmup_steps=10) == pytest.approx(0.5)
    cos = {"lr_schedule": "cosine", "max_steps": 100}
    assert factor(0, **cos) == 1.0 and factor(50, **cos) == pytest.approx(0.5) and 0 < factor(99, **cos) < 1e-3
    assert factor(25, **cos) == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    assert factor(50, lr_schedule="cosine", num_epoch=3) == 0.0  # past the end stays at 0
    assert factor(15, lr_schedule="cosine", num_epoch=3) == pytest.approx(0.5)  # 30 steps by epochs, sooner than no max
    warm = {**cos, "warmup_steps": 10}
    assert factor(4, **warm) == pytest.approx(0.5) and factor(55, **warm) == pytest.approx(0.5)
