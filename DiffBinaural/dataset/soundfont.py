"""Real recorded instruments for the synthetic scenes: generated scores played by FluidSynth.

A clip's players share a tempo and a key (an ensemble), each playing its own part (:func:`compose`):
a melody for the melodic families (a random walk on the scale in phrases, with rests and the family's
own rhythm), chords or arpeggios for piano and guitar, a kick / snare / hi-hat groove for the drums.
The parts are :class:`pretty_midi.Note` lists (a clip's score can be written as a ``.mid`` file) and
are played by FluidSynth (libfluidsynth through ``pyfluidsynth``) from a General-MIDI soundfont: the
recorded samples of that instrument, with their envelopes and velocity layers. Debian's
``fluid-soundfont-gm`` (FluidR3_GM, MIT licence) is found on its own; any ``.sf2`` can be passed.

Determinism: the soundfont is loaded once per process, each part is played by a fresh synth that
shares it (FluidSynth's voices keep state from earlier notes), reverb and chorus off (the room is
added by :mod:`.room`), the output read as float (the 16-bit path dithers with a state carried across
calls), every event on a 64-sample block boundary (FluidSynth's block). The same notes give the same
samples, whatever was rendered before.
"""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from binaural_core.audio import BadInputError
from binaural_core.extras import need

SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
                   "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
SOUNDFONT_ENV = "DIFFBINAURAL_SOUNDFONT"
SETTINGS = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256, "synth.cpu-cores": 1}
BLOCK = 64  # FluidSynth renders in blocks of 64 samples; events land on block boundaries
DRUM_CHANNEL = 9  # General MIDI: channel 10 (0-based 9) is the percussion kit
KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, LOW_TOM, HIGH_TOM = 36, 38, 42, 46, 49, 45, 50
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}


@dataclass(frozen=True)
class Family:
    """An instrument family: its General-MIDI program, range (MIDI notes) and way of playing."""

    program: int
    low: int = 0
    high: int = 127
    style: str = "melody"  # melody | chords | arpeggio | drums
    beats: tuple[float, ...] = (0.5, 1.0, 1.0, 2.0)  # note lengths it draws from, in beats


FAMILIES = {
    "piano": Family(program=0, low=43, high=84, style="chords", beats=(1.0, 2.0, 2.0, 4.0)),
    "guitar": Family(program=25, low=40, high=76, style="arpeggio", beats=(0.5,)),
    "violin": Family(program=40, low=55, high=93, beats=(0.5, 1.0, 1.0, 1.5, 2.0)),
    "cello": Family(program=42, low=36, high=64, beats=(1.0, 2.0, 2.0, 4.0)),
    "trumpet": Family(program=56, low=55, high=82, beats=(0.5, 0.5, 1.0, 1.5)),
    "flute": Family(program=73, low=60, high=96, beats=(0.25, 0.5, 0.5, 1.0, 2.0)),
    "saxophone": Family(program=65, low=49, high=80, beats=(0.5, 1.0, 1.5)),
    "drums": Family(program=0, style="drums", beats=(0.25,)),
}


def _pretty_midi():
    return need("pretty_midi", "soundfont sources (--sources soundfont)")


def ensemble(rng: np.random.Generator) -> dict:
    """A clip's shared tempo and key: ``{"tempo_bpm", "root" (MIDI pitch class), "scale"}``."""
    return {"tempo_bpm": float(rng.uniform(72, 140)), "root": int(rng.integers(0, 12)),
            "scale": str(rng.choice(sorted(SCALES)))}


def _scale_pitches(root: int, scale: str, low: int, high: int) -> np.ndarray:
    return np.array([p for p in range(low, high + 1) if (p - root) % 12 in SCALES[scale]])


def compose(family: str, rng: np.random.Generator, seconds: float, band: dict) -> list:
    """One part of ``seconds`` for ``family`` in the ensemble ``band``: a list of ``pretty_midi.Note``."""
    pm, fam = _pretty_midi(), FAMILIES[family]
    beat = 60.0 / band["tempo_bpm"]
    notes, t = [], float(rng.uniform(0.0, 0.5)) * beat  # a player may come in a little late
    if fam.style == "drums":
        steps = int(math.ceil(seconds / (beat / 4)))
        fill_from = steps - 4 if rng.random() < 0.3 else steps  # a tom fill at the end, sometimes
        for k in range(steps):
            at, hits = k * beat / 4, []
            if k >= fill_from:
                hits.append((HIGH_TOM if k % 2 else LOW_TOM, 100))
            else:
                if k % 8 == 0 or (k % 8 == 6 and rng.random() < 0.4):
                    hits.append((KICK, 105))
                if k % 8 == 4:
                    hits.append((SNARE, 100))
                if k % 2 == 0:
                    hits.append((OPEN_HAT if k % 16 == 14 and rng.random() < 0.5 else CLOSED_HAT, 70))
            if k == 0 and rng.random() < 0.5:
                hits.append((CRASH, 90))
            for pitch, vel in hits:
                v = int(np.clip(vel + rng.normal(0, 8), 30, 127))
                notes.append(pm.Note(velocity=v, pitch=pitch, start=at, end=at + beat / 4))
        return [n for n in notes if n.start < seconds]
    pitches = _scale_pitches(band["root"], band["scale"], fam.low, fam.high)
    idx = int(rng.integers(len(pitches) // 4, 3 * len(pitches) // 4 + 1))
    base_vel = float(rng.uniform(60, 100))
    while t < seconds:
        length = float(rng.choice(fam.beats)) * beat
        if rng.random() < 0.12:  # a rest
            t += length
            continue
        idx = int(np.clip(idx + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]), 0, len(pitches) - 1))
        vel = int(np.clip(base_vel + rng.normal(0, 10), 25, 127))
        if fam.style == "chords":  # a triad on the scale (root, third, fifth), held
            chord = [pitches[min(idx + s, len(pitches) - 1)] for s in (0, 2, 4)]
            notes += [pm.Note(velocity=vel, pitch=int(p), start=t, end=t + length * 0.95) for p in chord]
        elif fam.style == "arpeggio":  # the triad's notes one after another, each ringing on
            for j, s in enumerate((0, 2, 4, 2)):
                p, at = pitches[min(idx + s, len(pitches) - 1)], t + j * length
                notes.append(pm.Note(velocity=vel, pitch=int(p), start=at, end=at + 3 * length))
            length *= 4
        else:
            legato = 0.98 if family in ("violin", "cello") else float(rng.uniform(0.7, 0.95))
            notes.append(pm.Note(velocity=vel, pitch=int(pitches[idx]), start=t, end=t + length * legato))
        t += length
    return [n for n in notes if n.start < seconds]


def score(parts: dict[str, list], band: dict):
    """The clip's score as a ``pretty_midi.PrettyMIDI`` (one instrument per family; ``.write(path)``)."""
    pm = _pretty_midi()
    midi = pm.PrettyMIDI(initial_tempo=band["tempo_bpm"])
    for family, notes in parts.items():
        inst = pm.Instrument(program=FAMILIES[family].program, is_drum=FAMILIES[family].style == "drums",
                             name=family)
        inst.notes.extend(notes)
        midi.instruments.append(inst)
    return midi


def find_soundfont(path: str | None = None) -> str:
    """The given ``.sf2``, else ``$DIFFBINAURAL_SOUNDFONT``, else the first General-MIDI soundfont installed."""
    if path:
        if not os.path.isfile(path):
            raise BadInputError(path, "soundfont not found")
        return os.path.abspath(path)
    for candidate in (os.environ.get(SOUNDFONT_ENV, ""), *SOUNDFONT_PATHS):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise BadInputError(None, "no General-MIDI soundfont found: apt install fluid-soundfont-gm (Debian/Ubuntu), "
                              f"or pass --soundfont FILE.sf2 (or set {SOUNDFONT_ENV})")


def _fluidsynth():
    try:
        import fluidsynth
    except ModuleNotFoundError:
        need("fluidsynth", "soundfont sources (--sources soundfont)")
    except ImportError as err:  # pyfluidsynth is there, libfluidsynth is not
        raise BadInputError(None, f"soundfont sources need the FluidSynth library ({err}): "
                                  "apt install fluidsynth (Debian/Ubuntu) or brew install fluid-synth") from None
    return fluidsynth


def _bind(lib) -> dict:
    """The libfluidsynth calls used here, with their C prototypes (ctypes)."""
    vp, i = ctypes.c_void_p, ctypes.c_int
    protos = {"new_fluid_synth": (vp, [vp]), "delete_fluid_synth": (None, [vp]),
              "fluid_synth_get_sfont_by_id": (vp, [vp, i]), "fluid_synth_add_sfont": (i, [vp, vp]),
              "fluid_synth_remove_sfont": (i, [vp, vp]), "fluid_synth_program_select": (i, [vp, i, i, i, i]),
              "fluid_synth_noteon": (i, [vp, i, i, i]), "fluid_synth_noteoff": (i, [vp, i, i]),
              "fluid_synth_write_float": (i, [vp, i, vp, i, i, vp, i, i]),
              "fluid_set_log_function": (vp, [i, vp, vp])}
    calls = {}
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        calls[name] = fn
    return calls


class Synth:
    """A soundfont loaded once at ``sr`` Hz; each part is played by a **fresh** synth sharing it.

    FluidSynth's voices keep state from the notes they played (a reused voice sounds a little different
    from a new one, ~−50 dB), so one synth for many parts would make a part depend on what was rendered
    before it. A new synth costs ~3 ms; loading the soundfont again would cost ~0.7 s.
    """

    def __init__(self, soundfont: str, sr: int) -> None:
        fs = _fluidsynth()
        self.sr, self.soundfont = int(sr), soundfont
        self._c = _bind(fs._fl)
        for level in (2, 3, 4):  # FLUID_WARN, INFO, DBG: a synth without a preset on every channel warns
            self._c["fluid_set_log_function"](level, None, None)
        # settings before the synth is made: some are read only then
        self._owner = fs.Synth(gain=0.5, samplerate=float(sr), channels=16, **SETTINGS)
        sfid = self._owner.sfload(soundfont)
        if sfid < 0:
            raise BadInputError(soundfont, "FluidSynth could not load this soundfont")
        self._font = self._c["fluid_synth_get_sfont_by_id"](self._owner.synth, sfid)

    def play(self, notes: list, family: str, num_samples: int) -> np.ndarray:
        """The notes of one part, mono float32 ``(num_samples,)`` (the mean of FluidSynth's two outputs)."""
        c, fam = self._c, FAMILIES[family]
        chan = DRUM_CHANNEL if fam.style == "drums" else 0
        total = -(-num_samples // BLOCK) * BLOCK
        events = []  # (sample, order, on, pitch, velocity): offs before ons at the same sample
        for n in notes:
            on = int(round(n.start * self.sr / BLOCK)) * BLOCK
            off = max(on + BLOCK, int(round(n.end * self.sr / BLOCK)) * BLOCK)
            events += [(on, 1, True, n.pitch, n.velocity), (off, 0, False, n.pitch, 0)]
        out = np.zeros((total, 2), np.float32)  # interleaved stereo, C-contiguous
        synth = c["new_fluid_synth"](self._owner.settings)
        try:
            sfid = c["fluid_synth_add_sfont"](synth, self._font)
            c["fluid_synth_program_select"](synth, chan, sfid, 128 if chan == DRUM_CHANNEL else 0, fam.program)
            cursor = 0
            for at, _, is_on, pitch, vel in sorted(events) + [(total, 0, None, 0, 0)]:
                at = min(at, total)
                if at > cursor:
                    ptr = out[cursor:].ctypes.data
                    c["fluid_synth_write_float"](synth, at - cursor, ptr, 0, 2, ptr, 1, 2)
                    cursor = at
                if is_on:
                    c["fluid_synth_noteon"](synth, chan, int(pitch), int(vel))
                elif is_on is False:
                    c["fluid_synth_noteoff"](synth, chan, int(pitch))
        finally:  # the font belongs to the owner: take it back before the synth is deleted
            c["fluid_synth_remove_sfont"](synth, self._font)
            c["delete_fluid_synth"](synth)
        return out[:num_samples].mean(axis=1)


@lru_cache(maxsize=2)
def synth(soundfont: str, sr: int) -> Synth:
    """This process's synth for a soundfont and rate (loading FluidR3_GM takes a moment)."""
    return Synth(soundfont, sr)


def render_part(family: str, notes: list, num_samples: int, sr: int, soundfont: str) -> np.ndarray:
    """A part's recording ``(num_samples,)`` float64, unit RMS over the samples that sound (as the
    synthetic instruments: the clip's levels are set by its sources' gains)."""
    x = synth(soundfont, sr).play(notes, family, num_samples).astype(np.float64)
    loud = np.abs(x) > 1e-4
    rms = math.sqrt(float((x[loud] ** 2).mean())) if loud.any() else 0.0
    return x / rms if rms > 0 else x
