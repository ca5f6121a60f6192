"""The realistic scenes: measured heads (SOFA), image-source rooms, soundfont instruments, the generator."""

from __future__ import annotations

import csv
import glob
import json
import math
import os

import h5py
import numpy as np
import pytest
import soundfile as sf
from test_synthetic import gcc_phat_itd, ild_db

from binaural_core.audio import LEFT, RIGHT, BadInputError
from DiffBinaural.dataset import heads, layout, room, soundfont, synthetic

SR = 22050
MEASURED = heads.installed_heads()


def _soundfont_or_skip() -> str:
    try:
        soundfont._fluidsynth()
        return soundfont.find_soundfont()
    except BadInputError as err:  # FluidSynth or the soundfont is a system package: .ci/run installs both
        pytest.skip(str(err))


def write_sofa(path, *, right_first: bool, sr: int = 44100) -> None:
    """A tiny SimpleFreeFieldHRIR file: 36 horizontal directions; the ear facing the source hears an impulse
    at tap 8, the far ear 12 taps later and 10 dB weaker (so ITD and ILD both point to the source)."""
    az = np.arange(0, 360, 10.0)  # SOFA: counter-clockwise from the front, i.e. 90 = left
    ir = np.zeros((az.size, 2, 64))
    for m, a in enumerate(az):
        left_side = math.sin(math.radians(a))  # > 0: the source is on the left
        near, far = (0, 1) if left_side >= 0 else (1, 0)  # 0 = left ear here
        lag = int(round(12 * abs(left_side)))
        ir[m, near, 8] = 1.0
        ir[m, far, 8 + lag] = 10 ** (-10 * abs(left_side) / 20)
    receivers = np.array([[0, 0.09, 0], [0, -0.09, 0]])
    if right_first:
        ir, receivers = ir[:, ::-1], receivers[::-1]
    with h5py.File(path, "w") as f:
        f.attrs["SOFAConventions"], f.attrs["DataType"] = "SimpleFreeFieldHRIR", "FIR"
        f["Data.IR"], f["Data.SamplingRate"] = ir, np.array([float(sr)])
        f["SourcePosition"] = np.stack([az, np.zeros_like(az), np.full_like(az, 1.2)], axis=-1)
        f["SourcePosition"].attrs["Type"] = "spherical"
        f["ReceiverPosition"] = receivers[:, :, None]
        f["ListenerView"] = np.array([[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("right_first", [False, True])
def test_sofa_reader_sides_whatever_the_receiver_order(tmp_path, right_first):
    path = tmp_path / "toy.sofa"
    write_sofa(path, right_first=right_first)
    head = heads.MeasuredHead(path, sr=SR)  # 44.1 kHz file at 22.05 kHz: resampled
    for az_deg in (30.0, 60.0):
        itd, ild = heads.interaural(head, math.radians(az_deg))  # the project's azimuth: + = right
        assert itd > 0 and ild > 3, (az_deg, itd, ild)
        itd, ild = heads.interaural(head, math.radians(-az_deg))
        assert itd < 0 and ild < -3, (az_deg, itd, ild)
    # diffuse-field normalised, nearest measured direction: 33 deg right is the file's 330 (= -30) entry
    assert np.isclose((np.abs(np.fft.rfft(head.hrirs, 512)) ** 2).mean(), 1.0, rtol=0.05)
    assert np.degrees(np.arctan2(*head.directions[head.nearest(heads.direction(math.radians(33.0))[None])][0][[1, 0]])) == pytest.approx(-30.0)


def test_sofa_reader_refuses_what_it_cannot_read(tmp_path):
    bad = tmp_path / "notes.sofa"
    bad.write_text("not hdf5")
    with pytest.raises(BadInputError, match="not a SOFA file"):
        heads.MeasuredHead(bad, sr=SR)
    other = tmp_path / "other.sofa"
    write_sofa(other, right_first=False)
    with h5py.File(other, "a") as f:
        f.attrs["SOFAConventions"] = "GeneralTF"
    with pytest.raises(BadInputError, match="conventions"):
        heads.MeasuredHead(other, sr=SR)
    with pytest.raises(BadInputError, match="not found"):
        heads.load_head(str(tmp_path / "missing.sofa"), sr=SR)


@pytest.mark.parametrize("name", ["spherical", *sorted(MEASURED)])
def test_heads_itd_and_ild_point_to_the_source(name):
    """Spherical and every installed measured head (make hrtf): right of centre = right ear earlier and louder."""
    head = heads.load_head(MEASURED.get(name, name), sr=SR)
    itds = []
    for az_deg in (20.0, 45.0, 70.0):
        for side in (1, -1):
            itd, ild = heads.interaural(head, side * math.radians(az_deg))
            assert np.sign(itd) == side and np.sign(ild) == side, (name, az_deg, side, itd, ild)
        itds.append(heads.interaural(head, math.radians(az_deg))[0])
    assert itds[0] < itds[2] and 0.3e-3 < itds[2] < 0.9e-3, itds  # grows to ~0.6 ms at the side


class SideHead(heads.Head):
    """A test head: an impulse at tap 0 in the ear on the side the sound comes from (both for |y| <= 0.5)."""

    name, sr = "side", SR

    def impulses(self, directions):
        y = np.asarray(directions)[:, 1]
        out = np.zeros((len(y), 2, 4), np.float32)
        out[:, LEFT, 0] = y > -0.5
        out[:, RIGHT, 0] = y < 0.5
        return out

    def length(self):
        return 4


def _mirror_images(size, src):
    """First-order images by hand: the source mirrored in each of the six walls."""
    images = []
    for axis in range(3):
        for wall in (0.0, size[axis]):
            img = np.array(src, float)
            img[axis] = 2 * wall - img[axis]
            images.append(img)
    return images


def test_image_source_reflections_arrive_when_and_where_geometry_says():
    shoebox = room.Room(size=(6.0, 4.0, 3.0), absorption=0.36, listener=(2.0, 1.6, 1.3), max_order=1)
    src = np.array([4.1, 2.7, 1.0])
    x = np.zeros(4096)
    x[0] = 1.0
    out = room.render_source(x, src, shoebox, SideHead(), SR)
    lis = np.asarray(shoebox.listener)
    expected = [(src, 1.0)] + [(img, math.sqrt(1 - 0.36)) for img in _mirror_images(shoebox.size, src)]
    rest = out.copy()
    for pos, beta in expected:
        d = float(np.linalg.norm(pos - lis))
        n = d / room.SPEED_OF_SOUND_M_S * SR
        y = (pos - lis)[1] / d  # + = left
        for ear in [e for e, on in ((LEFT, y > -0.5), (RIGHT, y < 0.5)) if on]:
            k = int(np.argmax(np.abs(out[ear, int(n) - 1 : int(n) + 3]))) + int(n) - 1
            assert abs(k - n) <= 1.0, (pos, ear, k, n)  # the delay of the geometry, +- 1 sample
            assert out[ear, k] == pytest.approx(beta / d, rel=0.02)  # 1/r and the walls' reflectance
            rest[ear, k] -= beta / d
    # nothing else: each arrival only in the ear(s) on its side, no other sound
    assert np.abs(rest).max() < 0.02 * (1 / np.linalg.norm(src - lis))


def test_tail_decays_at_the_rooms_rt60():
    shoebox = room.draw_room(np.random.default_rng(5), rt60=(0.6, 0.6))
    assert shoebox.rt60() == pytest.approx(0.6, rel=1e-6)  # Eyring, the absorption drawn for it
    ir = room.tail_ir(shoebox, heads.SphericalHead(sr=SR), SR, np.random.default_rng(1))
    for ear in (LEFT, RIGHT):
        edc = np.cumsum(ir[ear, ::-1] ** 2)[::-1]  # Schroeder's backward integral
        db = 10 * np.log10(edc / edc[0])
        t5, t25 = np.argmax(db < -5) / SR, np.argmax(db < -25) / SR
        assert 3 * (t25 - t5) == pytest.approx(0.6, rel=0.12)  # T20 extrapolated to 60 dB
    start = int(shoebox.tail_start() * SR)
    assert (ir[:, : start - 2] ** 2).sum() < 1e-6 * (ir**2).sum()  # the images own the start
    assert np.corrcoef(ir[LEFT], ir[RIGHT])[0, 1] < 0.2  # diffuse: decorrelated ears
    assert (ir**2).sum(axis=-1) == pytest.approx(shoebox.tail_energy(), rel=1e-6)


@pytest.mark.parametrize("size, rt60", [((7.0, 6.0, 3.0), 0.6), ((5.0, 4.0, 2.8), 0.4), ((12.0, 9.0, 4.0), 0.9)])
def test_tail_energy_is_what_the_full_image_source_model_leaves_after_the_images(size, rt60):
    """Sabine's tail energy (Room.tail_energy) against an independent reference: pyroomacoustics' image
    sources up to order 60 in the same shoebox, summed (β/r)² after the direct sound + tail_start."""
    pra = pytest.importorskip("pyroomacoustics")
    volume, surface = np.prod(size), 2 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    alpha = float(1.0 - np.exp(-0.161 * volume / (surface * rt60)))  # Eyring
    shoebox = room.Room(size=size, absorption=alpha, listener=(size[0] / 4, size[1] / 2, 1.5))
    assert shoebox.rt60() == pytest.approx(rt60)
    ref = pra.ShoeBox(list(size), fs=16000, materials=pra.Material(alpha), max_order=60, air_absorption=False)
    ref.add_source(list(np.asarray(shoebox.listener) + [2.0, 0.3, 0.0]))
    ref.add_microphone(list(shoebox.listener))
    ref.image_source_model()
    images = ref.sources[0]
    r = np.linalg.norm(images.images.T - np.asarray(shoebox.listener), axis=1)
    energy = (images.damping.reshape(-1, images.images.shape[1])[0] / r) ** 2  # re the direct sound at 1 m
    late = energy[r / room.SPEED_OF_SOUND_M_S >= r.min() / room.SPEED_OF_SOUND_M_S + shoebox.tail_start()].sum()
    assert shoebox.tail_energy() == pytest.approx(late, rel=0.2), (shoebox.tail_energy(), late)


@pytest.mark.parametrize("name", ["spherical", *sorted(MEASURED)])
def test_tail_ears_are_as_coherent_as_a_diffuse_field(name):
    """The tail's interaural coherence is the head's diffuse-field one: one field at low frequencies (a
    tail with independent ears would give a random L−R at 150 Hz), nearly independent ears above 2 kHz."""
    from scipy.signal import csd, welch

    head = heads.load_head(MEASURED.get(name, name), sr=SR)
    shoebox = room.Room(size=(20.0, 15.0, 8.0), absorption=0.05, listener=(5.0, 7.5, 1.5))  # a long tail
    ir = room.tail_ir(shoebox, head, SR, np.random.default_rng(2))
    ir = ir[:, int(shoebox.tail_start() * SR) + 200:]
    f, cross = csd(ir[LEFT], ir[RIGHT], fs=SR, nperseg=512)
    _, p_l = welch(ir[LEFT], fs=SR, nperseg=512)
    _, p_r = welch(ir[RIGHT], fs=SR, nperseg=512)
    want = np.interp(f, np.arange(513) * SR / 1024, head.diffuse_coherence(1024))
    for lo, hi in ((100, 250), (250, 500), (500, 1000), (2000, 6000)):
        band = (f >= lo) & (f < hi)
        got = cross[band].real.sum() / np.sqrt(p_l[band].sum() * p_r[band].sum())
        assert got == pytest.approx(want[band].mean(), abs=0.12), (name, lo, hi, got, want[band].mean())
    low = (f >= 100) & (f < 250)
    assert want[low].mean() > 0.8 and abs(want[(f >= 2000) & (f < 6000)].mean()) < 0.15  # the physics itself


def test_soundfont_parts_are_deterministic_and_in_tune():
    font = _soundfont_or_skip()
    band = {"tempo_bpm": 100.0, "root": 0, "scale": "major"}
    parts = {f: soundfont.compose(f, np.random.default_rng(3), 2.0, band) for f in soundfont.FAMILIES}
    first = {f: soundfont.render_part(f, parts[f], 2 * SR, SR, font) for f in parts}
    again = {f: soundfont.render_part(f, parts[f], 2 * SR, SR, font) for f in reversed(list(parts))}
    for f in parts:
        assert np.array_equal(first[f], again[f]), f  # whatever was rendered before
        assert np.sqrt((first[f] ** 2).mean()) > 0.3, f  # it sounds (unit RMS over what sounds)
    other = soundfont.compose("violin", np.random.default_rng(4), 2.0, band)
    assert not np.array_equal(soundfont.render_part("violin", other, 2 * SR, SR, font), first["violin"])
    # an A4 on the flute: the pitch is 440 Hz at the scene's rate (a wrong rate moves it)
    note = [soundfont._pretty_midi().Note(velocity=90, pitch=69, start=0.1, end=1.5)]
    x = soundfont.render_part("flute", note, 2 * SR, SR, font)[int(0.4 * SR) : int(1.2 * SR)]
    ac = np.correlate(x, x, "full")[x.size - 1 :]
    lag = np.argmax(ac[int(SR / 1000) : int(SR / 200)]) + int(SR / 1000)  # 200..1000 Hz
    assert SR / lag == pytest.approx(440.0, rel=0.03)


def _scene(out, **kw):
    base = dict(num_clips=3, seconds=1.5, seed=7, sources="synthetic", room="diffuse", reverb=False)
    return synthetic.generate_dataset(out, **{**base, **kw})


def xcorr_itd(left: np.ndarray, right: np.ndarray, sr: int, max_lag: int = 40) -> float:
    """ITD in seconds from the plain interaural cross-correlation's peak (positive = right ear leads).

    Not PHAT: whitening gives the bins where the source is silent (a voice between its harmonics, the
    band above a resampled head's cut-off) as much weight as the loud ones."""
    n = 2 * left.size
    cc = np.fft.irfft(np.fft.rfft(left, n) * np.conj(np.fft.rfft(right, n)), n)
    return (int(np.argmax(np.concatenate([cc[-max_lag:], cc[: max_lag + 1]]))) - max_lag) / sr


def _head_path(name: str) -> str:
    """A clip's recorded head name -> its SOFA file (the name is the file's stem)."""
    (path,) = [p for p in MEASURED.values() if os.path.splitext(os.path.basename(p))[0] == name]
    return path


@pytest.mark.skipif(not MEASURED, reason="no measured head installed (make hrtf)")
@pytest.mark.parametrize("room_kind", ["diffuse", "image_source"])
def test_generator_with_measured_heads_puts_the_source_on_its_side(tmp_path, room_kind):
    """One static source per clip through measured heads (one drawn per clip): the written wav's ITD and
    ILD have the sign of the source's side, and the recorded ITD (the head's own) agrees.

    In a room the wav's cross-correlation is no measure of the direct sound's ITD: beyond the critical
    distance (well under a metre here) the reflections and the tail carry most of the energy, a tone's
    or a voice's correlation repeats every period, and a plain correlation is led by the low band, a
    whitened one by the tail's random phase. There the room's own response (direct path and images) at
    the recorded position must lead on the source's side, and the wav's level must lean to it for
    broadband sources (a tone's level at each ear is also set by the room's modes)."""
    sofas = tuple(sorted(MEASURED.values()))
    _scene(tmp_path, num_clips=24, seconds=1.0, min_sources=1, max_sources=1, moving_prob=0.0, hrtf=sofas, room=room_kind)
    meta = synthetic.load_meta(tmp_path)
    used, checked, wav_itd, wav_ild = set(), 0, 0, 0
    for name, clip in meta["clips"].items():
        used.add(clip["head"]["head"])
        (src,) = clip["sources"]
        az = src["azimuth_deg"][0]
        if abs(az) < 12:
            continue
        wav = sf.read(os.path.join(tmp_path, "processed", "binaural_audios_22050Hz", f"{name}.wav"))[0].T
        side = np.sign(az)
        if room_kind == "diffuse":
            assert np.sign(xcorr_itd(wav[LEFT], wav[RIGHT], SR)) == side, (name, az)
            wav_itd += 1
        else:
            spec = clip["room"]
            shoebox = room.Room(size=tuple(spec["size_m"]), absorption=spec["absorption"],
                                listener=tuple(spec["listener_m"]), max_order=spec["max_order"])
            impulse = np.zeros(4096)
            impulse[64] = 1.0
            brir = room.render_source(impulse, np.asarray(src["position_m"]), shoebox,
                                      heads.MeasuredHead(_head_path(clip["head"]["head"]), sr=SR), SR)
            assert np.sign(gcc_phat_itd(brir[LEFT], brir[RIGHT], SR)) == side, (name, az)
            assert 0.3 <= spec["rt60_s"] <= 0.9
            assert np.linalg.norm(np.subtract(src["position_m"], spec["listener_m"])) <= src["distance_m"] + 0.5
        broadband = src["type"] in ("noise", "chirp", "pluck")
        if abs(az) > {"diffuse": 20 if broadband else 30, "image_source": 25 if broadband else 90}[room_kind]:
            # nearer the centre a source's level difference is within a dB of zero (more so in a room)
            wav_ild += 1
            assert np.sign(ild_db(wav)) == side, (name, az)
        assert np.sign(src["itd_ms"][0]) == side and abs(src["itd_ms"][0]) > 0.05
        checked += 1
    heads_there = {os.path.splitext(os.path.basename(p))[0] for p in MEASURED.values()}
    assert checked >= 3 and used <= heads_there, (checked, used, heads_there)
    assert wav_ild >= 2 and (room_kind != "diffuse" or wav_itd >= 3), (wav_ild, wav_itd)


def test_realistic_generator_is_deterministic_across_workers(tmp_path):
    font = _soundfont_or_skip()
    hrtf = (MEASURED["kemar"],) if "kemar" in MEASURED else ("spherical",)
    kw = dict(sources="soundfont", room="image_source", hrtf=hrtf, max_silent=2, max_sources=3, soundfont=font,
              num_clips=4, seed=2)
    one, two = tmp_path / "one", tmp_path / "two"
    _scene(one, workers=1, **kw)
    _scene(two, workers=2, **kw)
    files = sorted(p[len(str(one)):] for p in glob.glob(f"{one}/**/*", recursive=True) if os.path.isfile(p))
    assert any(f.endswith(".mid") for f in files) and any(f.endswith(".wav") for f in files)
    for f in files:
        with open(f"{one}{f}", "rb") as a, open(f"{two}{f}", "rb") as b:
            assert a.read() == b.read(), f
    meta = synthetic.load_meta(one)
    pm = soundfont._pretty_midi()
    with open(one / layout.RB_DETECTIONS) as fh:
        detected = list(csv.reader(fh))[1:]  # name, frame, x1, y1, x2, y2, score
    n_silent = 0
    for name, clip in meta["clips"].items():
        sounding = [s for s in clip["sources"] if not s["silent"]]
        silent = [s for s in clip["sources"] if s["silent"]]
        n_silent += len(silent)
        assert all("program" in s for s in sounding) and not any("program" in s for s in silent)
        midi = pm.PrettyMIDI(str(one / "midi" / f"{name}.mid"))
        assert sorted(i.name for i in midi.instruments) == sorted(s["type"] for s in sounding)
        rows = [r for r in detected if r[0] == name and r[1] == "1"]
        assert len(rows) == len(clip["sources"])  # silent objects are detected too
        assert set(clip["room"]) >= {"size_m", "absorption", "rt60_s", "listener_m"}
    assert n_silent > 0
    with open(one / synthetic.META_FILE) as fh:
        assert json.load(fh)["sources"] == "soundfont"


def test_realistic_mode_refuses_bad_choices(tmp_path):
    with pytest.raises(BadInputError, match="--room"):
        synthetic.SynthConfig(room="cathedral")
    with pytest.raises(BadInputError, match="SOFA file not found"):
        synthetic.SynthConfig(hrtf=(str(tmp_path / "none.sofa"),))
    with pytest.raises(BadInputError, match="max_silent"):
        synthetic.SynthConfig(max_sources=3, max_silent=3)  # 5 synthetic types
    with pytest.raises(BadInputError, match="soundfont not found"):
        synthetic.SynthConfig(sources="soundfont", soundfont=str(tmp_path / "none.sf2"))


def test_static_oracle_knows_the_median_per_band_and_nothing_of_time():
    from DiffBinaural.report import mel_rmse, static_oracle_diff

    rng = np.random.default_rng(0)
    mono = rng.normal(size=(80, 50))
    pan = np.linspace(-2, 2, 80)[:, None]  # a fixed level difference per band
    still = np.stack([mono + pan / 2, mono - pan / 2])
    assert static_oracle_diff(still) == pytest.approx(0.0, abs=1e-12)
    sweep = np.linspace(-1, 1, 50)[None, :]  # the source crosses: L−R changes sign halfway
    moving = np.stack([mono + sweep / 2, mono - sweep / 2])
    expected = np.sqrt(((sweep - np.median(sweep)) ** 2).mean())
    assert static_oracle_diff(moving) == pytest.approx(expected)
    # the mono copy's L−R error is the L−R itself; the oracle's is below it whenever the pan is fixed
    assert mel_rmse(np.stack([mono, mono]), still)[1] > static_oracle_diff(still)
