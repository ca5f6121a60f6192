"""The listening page (``report.py --html``, ``binauralize.py --report``): what it holds, and that a real
browser (headless Chromium) loads every player and image on it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import _proc
import numpy as np
import pytest
import soundfile as sf

from DiffBinaural.dataset import layout
from DiffBinaural.dataset.synthetic import generate_dataset
from DiffBinaural.evaluation.listening import PLAYER_PEAK

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny evaluation run: 3 clips; systems "copy of the ground truth" (48 kHz, 0.3 x its level) and
    "left only" (16 kHz); no metrics JSONs, so the page scores them itself."""
    root = tmp_path_factory.mktemp("listen")
    data = root / "data"
    generate_dataset(data, num_clips=3, seconds=1.5, seed=2, image_size=(96, 64), split_fractions=(0, 0, 1))
    gt_dir = data / layout.RB_BINAURAL_DIR
    for system in ("copy", "left"):
        (root / system).mkdir()
    import librosa

    for wav_path in sorted(gt_dir.glob("*.wav")):
        gt, sr = sf.read(wav_path, dtype="float32")
        sf.write(root / "copy" / wav_path.name, 0.3 * librosa.resample(gt.T, orig_sr=sr, target_sr=48000).T, 48000)
        left = librosa.resample(np.stack([gt[:, 0], gt[:, 0]]), orig_sr=sr, target_sr=16000)
        sf.write(root / "left" / wav_path.name, left.T, 16000)
    out = root / "page"
    proc = subprocess.run([_proc.python(), "-m", "DiffBinaural.report", "--out_dir", out, "--html",
                           "--pred_dirs", f"copy={root / 'copy'}", f"left only={root / 'left'}", "--gt_dir", gt_dir,
                           "--mono_dir", data / layout.RB_MONO_DIR, "--frames_root", data / layout.RB_FRAMES_DIR,
                           "--boxes", data / layout.RB_DETECTIONS, "--excerpt_seconds", "1.0",
                           "--command", "python make_this_run.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_page_holds_every_clip_player_still_and_figure(run):
    page = (run / "report.html").read_text()
    audio = re.findall(r'<audio controls preload="metadata" src="([^"]+)" data-seconds="([^"]+)"', page)
    assert len(audio) == 3 * 4  # per clip: ground truth, 2 systems, mono copy
    assert "Listen on headphones" in page and "python make_this_run.py" in page and "CPU cores" in page
    for src, seconds in audio:
        wav, sr = sf.read(run / src)
        assert wav.shape[1] == 2 and abs(wav.shape[0] / sr - float(seconds)) < 1e-3
        assert float(seconds) == pytest.approx(1.0, abs=1e-3)  # cut to the documented excerpt
        # loudness-matched: every player peaks at the same level, whatever the system's gain or rate
        assert np.abs(wav).max() == pytest.approx(PLAYER_PEAK, abs=2 / 32768)
    images = re.findall(r'<img class="(?:still|figure)" src="([^"]+)"', page)
    assert len(images) == 3 * 3 and all((run / src).is_file() for src in images)
    # per-clip metrics were computed for the systems without a JSON: the copy is (near) perfect
    rows = re.findall(r"<tr><td>copy</td><td>([^<]+)</td>", page)
    assert rows and all(float(v) < 1e-3 for v in rows)


def test_the_still_frame_shows_the_boxes(run):
    from PIL import Image

    still = np.asarray(Image.open(next(run.glob("listen/frame_*.png"))).convert("RGB")).astype(int)
    red = (still[..., 0] > 200) & (still[..., 1] < 100) & (still[..., 2] < 100)  # the first box's outline
    assert red.sum() > 20


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium; "
                                             ".ci/run installs it)")
def test_chromium_loads_every_player_and_image(run, tmp_path):
    url = (run / "report.html").as_uri()
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--allow-file-access-from-files",
             "--virtual-time-budget=15000"]
    proc = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="selfcheck">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found and found.group(1).strip(), f"the page's self-check did not run:\n{proc.stderr[-2000:]}"
    report = json.loads(found.group(1).replace("&amp;", "&").replace("&quot;", '"'))
    assert len(report["audio"]) == 12
    for a in report["audio"]:
        assert a["error"] is None and a["readyState"] >= 1, a  # no 404, metadata loaded
        assert a["duration"] == pytest.approx(a["expected"], abs=0.01), a
    assert report["images"] and all(i["complete"] and i["width"] > 0 for i in report["images"])
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags[:-1], f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_mono_inputs_of_any_channel_count(tmp_path):
    """``--mono_dir`` wavs may be mono or stereo (down-mixed): read_wav(channels=None) takes any count and
    still refuses what is not audio."""
    from binaural_core.audio import BadInputError, read_wav

    stereo = np.stack([np.linspace(-0.5, 0.5, 800), np.zeros(800)]).astype(np.float32)
    sf.write(tmp_path / "a.wav", stereo.T, 16000)
    wav, sr = read_wav(tmp_path / "a.wav", channels=None)
    assert sr == 16000 and wav.shape == (2, 800) and np.allclose(wav, stereo, atol=1e-4)
    with pytest.raises(BadInputError, match="expected 1 channel"):
        read_wav(tmp_path / "a.wav", channels=1)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 3), np.float32), 16000)
    with pytest.raises(BadInputError, match="empty audio file"):
        read_wav(tmp_path / "empty.wav", channels=None)
