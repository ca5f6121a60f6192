"""Stage 1 datasets on tiny hand-made RealBinaural and FAIR-Play trees with known content."""

from __future__ import annotations

import os
import random

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from binaural_core.audio import LEFT, RIGHT, BadInputError
from binaural_core.mel import MelConfig, mel_spectrogram
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.base import _item_seed
from DiffBinaural.dataset.fairplay import FairPlayDataset
from DiffBinaural.dataset.frames import mirror_visual
from DiffBinaural.dataset.real_binaural import RealBinauralDataset
from DiffBinaural.model import mirror_ears

CFG = MelConfig()
SR, HOP = CFG.sampling_rate, CFG.hop_size
W, H = 80, 60  # frame size in pixels
P = 16  # image_size of the source crops
SEG = 8  # mel frames per crop → 2048 samples
CTX = (CFG.n_fft - HOP) // 2  # samples of context mel frame 0 sees before its first sample
L, N = 5, 4
RED_BOX = (10, 10, 30, 40)  # score 0.9: slot 0
GREEN_BOX = (50, 20, 70, 50)  # score 0.5: slot 1


def tone(freq: float, n: int, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def write_frames(folder: str, count: int, *, boxes: bool) -> None:
    """Frame i has grey level 10 * i (so a test can tell frames apart), red/green boxes if asked."""
    os.makedirs(folder, exist_ok=True)
    for i in range(1, count + 1):
        img = np.full((H, W, 3), 10 * i, np.uint8)
        if boxes:
            x1, y1, x2, y2 = RED_BOX
            img[y1:y2, x1:x2] = (255, 0, 0)
            x1, y1, x2, y2 = GREEN_BOX
            img[y1:y2, x1:x2] = (0, 255, 0)
        # no chroma subsampling, so colours stay clean up to the box border
        Image.fromarray(img).save(layout.frame_path(folder, i), quality=95, subsampling=0)


def write_csv(path: str, header: str, rows: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join([header, *rows]) + "\n")


@pytest.fixture
def rb_root(tmp_path) -> str:
    """Clip "a": L = 440 Hz, R = silence, own mono file (1000 Hz), red+green boxes in every frame
    except frame 6. Clip "b": L = noise, R = 660 Hz, no mono file, no detections. Both 1 s, 10 frames."""
    root = str(tmp_path / "rb")
    n = SR
    rng = np.random.default_rng(0)
    audio = {
        "a": np.stack([tone(440, n), np.zeros(n, np.float32)]),
        "b": np.stack([(0.3 * rng.standard_normal(n)).astype(np.float32), tone(660, n)]),
    }
    for name, wav in audio.items():
        paths = layout.rb_paths(root, name)
        os.makedirs(os.path.dirname(paths["binaural"]), exist_ok=True)
        sf.write(paths["binaural"], wav.T, SR, subtype="FLOAT")
        write_frames(paths["frames"], 10, boxes=name == "a")
    mono = layout.rb_paths(root, "a")["mono"]
    os.makedirs(os.path.dirname(mono), exist_ok=True)
    sf.write(mono, tone(1000, n), SR, subtype="FLOAT")
    rows = []
    for f in range(1, 11):
        if f != 6:  # green first in the file: order must come from the score
            rows += [f"a,{f},{','.join(map(str, GREEN_BOX))},0.5", f"a,{f},{','.join(map(str, RED_BOX))},0.9"]
    write_csv(os.path.join(root, layout.RB_DETECTIONS), ",".join(layout.DETECTION_COLUMNS), rows)
    for split in layout.SPLITS:
        write_csv(layout.rb_split_csv(root, split), "name", ["a", "b"])
    return root


def rb(root: str, split: str = "train", **kw) -> RealBinauralDataset:
    kw = {"segment_frames": SEG, "num_frames": L, "max_sources": N, "image_size": P, **kw}
    return RealBinauralDataset(data_root=root, list_csv=layout.rb_split_csv(root, split), split=split, mel_cfg=CFG, **kw)


def file_audio(path: str) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return data.T


# ---- shapes and content --------------------------------------------------------------------------
@pytest.mark.parametrize("split,seg", [("train", SEG), ("val", SEG), ("test", None)])
def test_item_shapes(rb_root, split, seg):
    item = rb(rb_root, split, segment_frames=seg)[0]
    frames = seg or SR // HOP
    assert item["name"] == "a" and item["start"] % HOP == 0
    assert item["mono_mel"].shape == (1, CFG.num_mels, frames) and item["mono_mel"].dtype == torch.float32
    assert item["binaural_mel"].shape == (2, CFG.num_mels, frames)
    assert item["mono_audio"].shape == (frames * HOP,) and item["mono_audio"].dtype == torch.float32
    assert item["binaural_audio"].shape == (2, frames * HOP)
    assert item["frames"].shape == (L, N, 3, P, P) and item["frames"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert item["positions"].shape == (L, N, 2) and item["positions"].dtype == torch.float32
    assert item["mask"].shape == (L, N) and item["mask"].dtype == torch.bool


def test_audio_and_mels_are_the_exact_crop(rb_root):
    ds = rb(rb_root, "train")
    for index, name in enumerate(ds.names):
        item = ds[index]
        s, e = item["start"], item["start"] + SEG * HOP
        paths = layout.rb_paths(rb_root, name)
        binaural = torch.from_numpy(file_audio(paths["binaural"]))
        mono = torch.from_numpy(file_audio(paths["mono"])[0]) if name == "a" else 0.5 * binaural.sum(0)
        torch.testing.assert_close(item["binaural_audio"], binaural[:, s:e], rtol=0, atol=0)
        torch.testing.assert_close(item["mono_audio"], mono[s:e], rtol=0, atol=1e-7)
        # the mels are those frames of the whole file's mel (the crop's neighbours, not a reflection)
        k0 = s // HOP
        torch.testing.assert_close(item["binaural_mel"], mel_spectrogram(binaural, CFG)[..., k0 : k0 + SEG],
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(item["mono_mel"][0], mel_spectrogram(mono, CFG)[..., k0 : k0 + SEG],
                                   rtol=0, atol=1e-5)
    # channel 0 is the file's channel 0: clip a has the tone on the left, silence on the right
    mel = ds[0]["binaural_mel"]
    # compare the loudest band: a pure tone fills one band, and its mean over all bands is only ~2 above
    # silence (a crop reflected at its own ends used to add broadband edge frames that raised it)
    assert mel[0].amax() > mel[1].amax() + 3
    assert torch.all(mel[1] < -11)  # silence sits at ln(1e-5)


def force_crop(ds, start: int):
    """Make every item of ``ds`` the crop at ``start`` (edge cases that random crops rarely hit)."""
    length = ds.segment_samples
    ds.crop_span = lambda index, generator=None: (start, length)
    return ds


def assert_slice_of_whole(item: dict, whole: dict) -> None:
    """``item``'s mels, phase channels and audio are frames / samples ``start // hop ...`` of the
    whole-clip item."""
    s = item["start"]
    k0, frames = s // HOP, item["mono_mel"].shape[-1]
    assert item["name"] == whole["name"] and whole["start"] == 0
    for key in ("mono_mel", "binaural_mel", "phase"):
        torch.testing.assert_close(item[key], whole[key][..., k0 : k0 + frames], rtol=0, atol=1e-4,
                                   msg=lambda m, key=key: f"{key} of {item['name']} at {s}: {m}")
    torch.testing.assert_close(item["binaural_audio"], whole["binaural_audio"][:, s : s + frames * HOP],
                               rtol=0, atol=0)
    torch.testing.assert_close(item["mono_audio"], whole["mono_audio"][s : s + frames * HOP], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["realbinaural", "fairplay"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_crop_mels_are_slices_of_the_whole_clip_mel(request, kind, split):
    """Every frame of a crop's mel, the first and last included, is the whole-clip mel's frame (the
    inference path slices that one). FAIR-Play covers both the resampled (whole file) and the
    segment-read branch of load_audio, RealBinaural the own-mono and the (L + R) / 2 clip."""
    root = request.getfixturevalue("rb_root" if kind == "realbinaural" else "fp_root")
    make = rb if kind == "realbinaural" else fp
    whole_set = make(root, split, segment_frames=None)
    wholes = [whole_set[i] for i in range(len(whole_set))]
    ds = make(root, split, seed=11)
    seen = set()
    for epoch in range(3):  # the dataset's own crops
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            seen.add(item["start"])
            assert_slice_of_whole(item, wholes[i])
    if split == "train":
        assert len(seen) > 1
    for i, clip in enumerate(ds.clips):  # near the start, in the middle and near the end
        last_start = (clip.num_samples // HOP - SEG) * HOP
        for start in (0, HOP, 2 * HOP, (last_start // 2) // HOP * HOP, last_start - HOP, last_start):
            item = force_crop(make(root, split), start)[i]
            assert item["start"] == start
            assert_slice_of_whole(item, wholes[i])


@pytest.mark.parametrize("mono_short", [False, True])
def test_crop_mels_at_the_clip_ends(rb_root, mono_short):
    """A crop from sample 0 and one ending at the last full hop: the context that leaves the clip is
    the clip reflected about its first / last sample, exactly as the whole-file mel pads it. With a
    shorter mono file the clip ends where the mono does, not where the binaural file does."""
    paths = layout.rb_paths(rb_root, "a")
    if mono_short:
        sf.write(paths["mono"], tone(1000, SR - 300), SR, subtype="FLOAT")
    whole = rb(rb_root, "val", segment_frames=None)[0]
    n = rb(rb_root, "val").clips[0].num_samples
    assert n == (SR - 300 if mono_short else SR)
    last = (n // HOP) * HOP
    assert 0 < n - last < CTX  # the end crop's right context is partly reflected
    # the whole-clip item is the mel of the files themselves (an independent reference)
    binaural = torch.from_numpy(file_audio(paths["binaural"])[:, :n])
    mono = torch.from_numpy(file_audio(paths["mono"])[0, :n])
    torch.testing.assert_close(whole["binaural_mel"], mel_spectrogram(binaural, CFG), rtol=0, atol=1e-5)
    torch.testing.assert_close(whole["mono_mel"][0], mel_spectrogram(mono, CFG), rtol=0, atol=1e-5)
    for split in ("train", "val"):
        for start in (0, last - SEG * HOP):
            item = force_crop(rb(rb_root, split), start)[0]
            assert item["start"] == start
            assert_slice_of_whole(item, whole)
    # a crop that is the whole clip (the only train crop): reflected context on both sides
    item = rb(rb_root, "train", segment_frames=n // HOP)[0]
    assert item["start"] == 0 and item["mono_audio"].shape[0] == last
    assert_slice_of_whole(item, whole)


# ---- crops ---------------------------------------------------------------------------------------
def test_train_crops_are_seeded_per_item_and_epoch(rb_root):
    ds = rb(rb_root, "train", seed=7)
    starts = {}
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            starts[epoch, i] = ds[i]["start"]
    assert len({starts[e, 0] for e in range(6)}) > 1 and len({starts[e, 1] for e in range(6)}) > 1
    assert any(starts[e, 0] != starts[e, 1] for e in range(6))
    # same (seed, epoch, index) → same crop, whatever the global RNGs and another instance
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    other = rb(rb_root, "train", seed=7)
    other.set_epoch(3)
    assert other[1]["start"] == starts[3, 1]
    torch.manual_seed(456)
    assert other[1]["start"] == starts[3, 1]
    assert [rb(rb_root, "train", seed=8)[i]["start"] for i in range(2)] != [starts[0, 0], starts[0, 1]]


def test_repeats_give_each_copy_its_own_crop(rb_root):
    """``repeats=2`` (--dup_trainset 2): item i + len(clips) is another copy of clip i with a crop
    of its own (a ConcatDataset of two copies gave the same crop twice)."""
    ds = rb(rb_root, "train", seed=7)
    ds.set_repeats(2)
    assert len(ds) == 4 and ds.names == ["a", "b"] and ds.repeats == 2
    assert [ds.clip_index(i) for i in range(-4, 4)] == [0, 1, 0, 1, 0, 1, 0, 1]
    with pytest.raises(IndexError):
        ds[4]
    pairs = differ = 0
    for epoch in range(5):
        ds.set_epoch(epoch)
        items = [ds[i] for i in range(len(ds))]
        for i in range(2):
            first, second = items[i], items[i + 2]
            assert first["name"] == second["name"] == ds.names[i]
            pairs += 1
            differ += first["start"] != second["start"]
            # each copy is still the exact crop of its clip
            whole = rb(rb_root, "test", segment_frames=None)[i]
            assert_slice_of_whole(first, whole)
            assert_slice_of_whole(second, whole)
    assert differ >= 0.8 * pairs, f"only {differ} of {pairs} copies drew their own crop"
    assert ds[-1]["start"] == ds[3]["start"]  # a negative index names the same item
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)
    assert next(iter(loader))["name"] == ["a", "b", "a", "b"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BadInputError, match="repeats"):
            ds.set_repeats(bad)


def test_repeats_one_keeps_the_old_seeds(rb_root):
    """``repeats=1`` draws item i's crop and flip coin from (seed, epoch, i) exactly as before repeats
    existed, and with ``repeats=2`` the first copy of each clip is that same item."""
    plain = rb(rb_root, "train", seed=5, flip=True)
    doubled = rb(rb_root, "train", seed=5, flip=True)
    doubled.set_repeats(2)
    free_hops = (SR - SEG * HOP) // HOP
    flips = set()
    for epoch in range(6):
        plain.set_epoch(epoch)
        doubled.set_epoch(epoch)
        for i in range(len(plain)):
            gen = torch.Generator().manual_seed(_item_seed(5, epoch, i))
            start = HOP * int(torch.randint(0, free_hops + 1, (1,), generator=gen))
            flip = bool(torch.rand((), generator=gen) < 0.5)
            item, copy = plain[i], doubled[i]
            assert item["start"] == copy["start"] == start
            unflipped = force_crop(rb(rb_root, "train"), start)[i]
            ears = unflipped["binaural_audio"].flip(0) if flip else unflipped["binaural_audio"]
            torch.testing.assert_close(item["binaural_audio"], ears, rtol=0, atol=0)
            for key in ("mono_mel", "binaural_mel", "binaural_audio", "frames", "positions", "mask"):
                assert torch.equal(item[key], copy[key]), key
            flips.add(flip)
    assert flips == {True, False}


def test_val_crop_is_centred_and_fixed(rb_root):
    ds = rb(rb_root, "val")
    free_hops = (SR - SEG * HOP) // HOP
    assert ds[0]["start"] == HOP * (free_hops // 2)
    ds.set_epoch(5)
    torch.testing.assert_close(ds[0]["binaural_mel"], rb(rb_root, "val")[0]["binaural_mel"], rtol=0, atol=0)


def test_flip_swaps_ears_and_mirrors_picture(rb_root):
    plain = rb(rb_root, "train")
    flipped = rb(rb_root, "train", flip=True)
    seen = set()
    for epoch in range(10):
        plain.set_epoch(epoch)
        flipped.set_epoch(epoch)
        a, b = plain[0], flipped[0]
        assert a["start"] == b["start"]
        torch.testing.assert_close(a["mono_audio"], b["mono_audio"])
        is_flipped = not torch.equal(a["binaural_audio"], b["binaural_audio"])
        seen.add(is_flipped)
        if not is_flipped:
            continue
        torch.testing.assert_close(b["binaural_audio"], a["binaural_audio"].flip(0))
        torch.testing.assert_close(b["binaural_mel"], a["binaural_mel"].flip(0))
        assert b["binaural_mel"][1].amax() > b["binaural_mel"][0].amax() + 3  # the tone is now on the right
        # the training flip and the test-time one (--flip_tta) mirror the target the same way
        target = lambda item: torch.cat([item["binaural_mel"], item["phase"]])[None]  # noqa: E731
        torch.testing.assert_close(target(b), mirror_ears(target(a)), atol=1e-5, rtol=1e-4)
        visual = ("frames", "positions", "mask")
        torch.testing.assert_close(mirror_visual({k: a[k] for k in visual}), {k: b[k] for k in visual})
        torch.testing.assert_close(b["frames"], a["frames"].flip(-1))
        assert torch.equal(b["mask"], a["mask"])
        valid = ~a["mask"]
        torch.testing.assert_close(b["positions"][..., 0][valid], 1 - a["positions"][..., 0][valid])
        torch.testing.assert_close(b["positions"][..., 1], a["positions"][..., 1])
        assert torch.all(b["positions"][a["mask"]] == 0)
    assert seen == {True, False}
    val = rb(rb_root, "val", flip=True)[0]  # never flips outside train
    assert val["binaural_mel"][0].mean() > val["binaural_mel"][1].mean()


def test_path_like_names_and_dataloader(rb_root, tmp_path):
    csv = str(tmp_path / "paths.csv")
    write_csv(csv, "name,other", ["/somewhere/else/a.wav,1", "b,2"])
    ds = RealBinauralDataset(data_root=rb_root, list_csv=csv, split="train", mel_cfg=CFG,
                             segment_frames=SEG, image_size=P)
    assert ds.names == ["a", "b"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)))
    assert batch["name"] == ["a", "b"]
    assert batch["frames"].shape == (2, 5, 4, 3, P, P) and batch["mask"].shape == (2, 5, 4)
    assert batch["binaural_mel"].shape == (2, 2, CFG.num_mels, SEG) and batch["start"].shape == (2,)


# ---- FAIR-Play -----------------------------------------------------------------------------------
@pytest.fixture
def fp_root(tmp_path) -> str:
    """Three 1 s clips at 16000, 44100 and 22050 Hz: left 1000 Hz, right 3000 Hz; 10 frames each."""
    root = str(tmp_path / "fp")
    for clip_id, sr in (("000001", 16000), ("000002", 44100), ("000003", SR)):
        paths = layout.fp_paths(root, clip_id)
        os.makedirs(os.path.dirname(paths["binaural"]), exist_ok=True)
        sf.write(paths["binaural"], np.stack([tone(1000, sr, sr), tone(3000, sr, sr)]).T, sr, subtype="FLOAT")
        write_frames(paths["frames"], 10, boxes=False)
    for split in layout.SPLITS:
        path = layout.fp_split_h5(root, split, 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:  # absolute paths from the authors' machine
            f.create_dataset("audio", data=np.array([f"/home/author/FAIR-Play/binaural_audios/{i}.wav".encode()
                                                     for i in ("000001", "000002", "000003")]))
    return root


def fp(root: str, split: str = "train", **kw) -> FairPlayDataset:
    kw = {"segment_frames": SEG, "num_frames": L, "max_sources": N, "image_size": P, **kw}
    return FairPlayDataset(data_root=root, split_h5=layout.fp_split_h5(root, split, 1), split=split, mel_cfg=CFG, **kw)


def peak_hz(x: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


def test_fairplay_resolves_basenames_and_resamples(fp_root):
    ds = fp(fp_root, "test", segment_frames=None, cache_audio=True)
    assert ds.names == ["000001", "000002", "000003"]
    assert [c.num_samples for c in ds.clips] == [SR, SR, SR]  # 1 s at any rate → 22050 samples
    for i in range(3):
        item = ds[i]
        assert item["binaural_audio"].shape == (2, (SR // HOP) * HOP)
        assert abs(peak_hz(item["binaural_audio"][0]) - 1000) < 5
        assert abs(peak_hz(item["binaural_audio"][1]) - 3000) < 5
        torch.testing.assert_close(item["mono_audio"], item["binaural_audio"].mean(0))
        assert item["mask"][:, 0].tolist() == [False] * L and torch.all(item["mask"][:, 1:])
        assert torch.all(item["positions"][:, 0] == 0.5)
        torch.testing.assert_close(ds[i]["binaural_audio"], item["binaural_audio"])  # cached copy
    crops = fp(fp_root, "train")
    assert crops[0]["binaural_mel"].shape == (2, CFG.num_mels, SEG)
    s = crops[2]["start"]  # the 22050 Hz file is read segment-wise
    expected = torch.from_numpy(file_audio(layout.fp_paths(fp_root, "000003")["binaural"])[:, s : s + SEG * HOP])
    torch.testing.assert_close(crops[2]["binaural_audio"], expected, rtol=0, atol=0)


def test_fairplay_bad_h5(fp_root, tmp_path):
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("video", data=np.array([b"x"]))
    with pytest.raises(BadInputError, match="no 'audio' dataset") as err:
        FairPlayDataset(data_root=fp_root, split_h5=path, split="train", mel_cfg=CFG)
    assert path in str(err.value)


def _append_detection(root, row):
    with open(os.path.join(root, layout.RB_DETECTIONS), "a") as f:
        f.write(row + "\n")


def test_mix_aug_sums_two_clips_and_keeps_both_clips_boxes(rb_root):
    """--mix_aug: the crop is the item's audio plus another clip's crop, and the partner's boxes follow in
    slots N..2N-1; without the coin the slots are masked; mix=0 leaves every item as it was."""
    plain, mixed = rb(rb_root, "train", seed=3), rb(rb_root, "train", seed=3, mix=1.0)
    a = mixed.names.index("a")
    item, alone = mixed[a], plain[a]
    assert item["mask"].shape == (L, 2 * N) and item["frames"].shape[1] == 2 * N
    # clip "a" (its two boxes in the first half) mixed with clip "b" (no detections: the whole frame, one slot)
    assert torch.equal(item["mask"][:, :N], alone["mask"]) and torch.equal(plain[plain.names.index("b")]["mask"],
                                                                          item["mask"][:, N:])
    assert torch.equal(item["frames"][:, :N], alone["frames"])
    # the audio is the sum: what "a" alone has, plus "b"'s right-ear 660 Hz tone in the right ear
    extra = item["binaural_audio"] - alone["binaural_audio"]
    assert float(extra[RIGHT].abs().max()) > 0.1 and float(extra[LEFT].abs().max()) > 0.05  # b's noise
    assert torch.allclose(item["mono_audio"] - alone["mono_audio"], extra.mean(dim=0), atol=1e-5)
    b = mixed.names.index("b")  # b mixed with a: a's boxes land in the second half
    assert torch.equal((~mixed[b]["mask"]).sum(dim=1), torch.full((L,), 1 + 2))
    assert all(torch.equal(plain[i]["binaural_mel"], rb(rb_root, "train", seed=3, mix=0.0)[i]["binaural_mel"])
               for i in range(len(plain)))
    assert rb(rb_root, "val", mix=1.0)[0]["mask"].shape == (L, N)  # validation is never mixed
    with pytest.raises(BadInputError, match="box tokens"):
        rb(rb_root, "train", mix=0.5, visual_tokens="grid")
