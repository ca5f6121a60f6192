"""A binaural track into a copy of the user's video (PyAV remux): the picture is never re-encoded.

:func:`write_video_with_audio` copies every packet of the input's first video stream as it is (same
bytes, same timestamps) into a new container and adds a stereo audio track encoded from a wav file
(AAC by default; Opus for ``.webm``). The audio is placed on the input's own timeline: its first
sample sits at the input audio's start time and it lasts as long as the input's audio
(:func:`audio_span`), so lips and hands stay in sync with the sound. Video and audio packets are
written in time order (interleaved), reading the wav in blocks: memory does not grow with the length.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import soundfile as sf

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError

VIDEO_OUTPUTS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
AUDIO_OUTPUTS = (".wav", ".flac")
DEFAULT_CODEC = {"webm": "libopus"}  # everything else: aac
VIDEO_OUT_SR = 48000  # the rate of video soundtracks
LOSSLESS = ("flac", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le")
_BLOCK = 8192  # audio samples encoded per block


def is_video_output(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_OUTPUTS


def check_output_path(path: str) -> None:
    """One line for an output extension that is neither audio (.wav/.flac) nor a video container."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in AUDIO_OUTPUTS and ext not in VIDEO_OUTPUTS:
        known = ", ".join((*AUDIO_OUTPUTS, *VIDEO_OUTPUTS))
        raise BadInputError(path, f"unknown output type {ext or '(no extension)'!r} (one of {known})")


def audio_span(video: str) -> tuple[float, float | None]:
    """``(start, duration)`` in seconds of the first audio track as it plays, relative to the
    container's time origin (where :func:`DiffBinaural.utils.video.decode_audio` puts sample 0): the
    time of its first decoded frame (after any encoder priming the decoder skips) and its declared
    (else decoded) length. ``(0, None)`` when the file has no audio track."""
    from DiffBinaural.utils.video import _open, _origin, _why

    container = _open(video)
    try:
        if not container.streams.audio:
            return 0.0, None
        stream = container.streams.audio[0]
        first, samples, rate = None, 0, stream.rate or stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                if first is None and frame.time is not None:
                    first = frame.time - _origin(container)
                samples += frame.samples
        except Exception as err:
            raise BadInputError(video, f"audio decoding failed ({_why(err)})") from None
        # the declared length where the container has one: the decoded one includes the encoder's
        # padding of the last frame (up to one frame more than the recording)
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if not declared and not samples:
            raise BadInputError(video, "the audio track has no decodable samples")
        return max(0.0, first or 0.0), declared or samples / rate
    finally:
        container.close()


def write_video_with_audio(video: str, wav: str, out: str, *, audio_codec: str | None = None,
                           start_s: float = 0.0, duration_s: float | None = None, bit_rate: int = 192_000) -> None:
    """``out`` = the video stream of ``video`` (packets copied) + the stereo ``wav`` as its audio track.

    Args:
        video: the user's input file (its first video stream is copied; other streams are not).
        wav: the binaural audio (2 channels, any rate: the track's rate), sample 0 at the input's
            time origin; the track is its samples from ``start_s`` seconds on, ``duration_s`` long
            (default: to the end), placed at that time (:func:`audio_span` of the input).
        out: ``.mp4``/``.m4v``/``.mov``/``.mkv``/``.webm``; written atomically.
        audio_codec: an FFmpeg encoder name (default: aac, libopus for webm).

    Raises:
        BadInputError: the input has no video stream, or the container cannot hold its video codec
            or the chosen audio codec (one line naming the file).
    """
    import av

    from DiffBinaural.utils.video import _open, _origin, _why

    ext = os.path.splitext(out)[1].lower()
    if ext not in VIDEO_OUTPUTS:
        raise BadInputError(out, f"not a video container ({', '.join(VIDEO_OUTPUTS)})")
    fmt = VIDEO_OUTPUTS[ext]
    codec = audio_codec or DEFAULT_CODEC.get(fmt, "aac")
    source = _open(video)
    try:
        if not source.streams.video:
            raise BadInputError(video, "no video stream to copy into the output video (write a .wav instead)")
        vin = source.streams.video[0]
        origin = _origin(source)
        with sf.SoundFile(wav) as audio, atomic_output(out, suffix=ext) as tmp:
            try:
                sink = av.open(tmp, "w", format=fmt)
            except Exception as err:
                raise BadInputError(out, f"cannot create the output ({_why(err)})") from None
            try:
                try:  # opaque: a stream copy needs no encoder (there is none named like e.g. libdav1d)
                    vout = sink.add_stream_from_template(vin, opaque=True)
                except Exception as err:  # e.g. h264 into webm
                    raise BadInputError(out, f"this container cannot hold the video's {vin.codec_context.name} "
                                             f"stream ({_why(err)}); try .mkv, which holds any codec") from None
                aout = _audio_stream(sink, codec, audio.samplerate, bit_rate, out)
                _interleave(source, vin, vout, sink, aout, audio, start_s=start_s, duration_s=duration_s,
                            origin=origin, out=out)
            finally:
                sink.close()
    finally:
        source.close()


def _audio_stream(sink, codec: str, rate: int, bit_rate: int, out: str):
    import av

    from DiffBinaural.utils.video import _why

    try:
        rates = av.codec.Codec(codec, "w").audio_rates
    except Exception as err:
        raise BadInputError(out, f"audio codec {codec!r} is not available here ({_why(err)}); "
                                 "choose another with --audio_codec") from None
    if rates and rate not in rates:  # Opus, e.g., takes 48/24/16/12/8 kHz only
        raise BadInputError(out, f"audio codec {codec!r} cannot encode at {rate} Hz (it takes "
                                 f"{', '.join(map(str, sorted(rates)))}): choose --out_sr or --audio_codec")
    try:
        stream = sink.add_stream(codec, rate=rate, layout="stereo")
    except Exception as err:
        raise BadInputError(out, f"audio codec {codec!r} is not available here ({_why(err)}); "
                                 "choose another with --audio_codec") from None
    stream.time_base = Fraction(1, rate)
    if codec not in LOSSLESS:
        stream.bit_rate = bit_rate
    return stream


def _interleave(source, vin, vout, sink, aout, audio: sf.SoundFile, *, start_s: float,
                duration_s: float | None, origin: float, out: str) -> None:
    """Mux the copied video packets and the encoded audio in presentation order."""
    import av

    from DiffBinaural.utils.video import _why

    rate = audio.samplerate
    skip = min(audio.frames, round(start_s * rate))
    audio.seek(skip)
    total = audio.frames - skip if duration_s is None else min(audio.frames - skip, round(duration_s * rate))
    # Both streams are moved by the input's time origin, so the output starts at 0 (as ffmpeg does): a
    # .ts input starting at 1.4 s would otherwise begin with 1.4 s of black and silence in mp4 players.
    first_pts = skip  # the audio's place on the input's clock, relative to its origin
    written = 0  # audio samples encoded so far

    def audio_until(t: float | None) -> None:
        """Encode and mux audio up to time ``t`` (seconds, container clock; None: all of it)."""
        nonlocal written
        while written < total and (t is None or (first_pts + written) / rate <= t - origin):
            block = audio.read(min(_BLOCK, total - written), dtype="float32", always_2d=True)  # (n, 2)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, first_pts + written, Fraction(1, rate)
            written += len(block)
            sink.mux(aout.encode(frame))

    try:
        for packet in source.demux(vin):
            if packet.size == 0:  # the demuxer's flush packet (mkv packets may lack a dts: keep them)
                continue
            if packet.time_base:
                if packet.pts is not None:
                    audio_until(float(packet.pts * packet.time_base))
                shift = round(origin / packet.time_base)
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = vout
            sink.mux(packet)
        audio_until(None)
        sink.mux(aout.encode(None))
    except BadInputError:
        raise
    except Exception as err:  # e.g. a codec the container cannot hold (h264 in webm)
        raise BadInputError(out, f"cannot write this video ({_why(err)}); try .mkv, which holds any codec") from None


def audio_rate(path: str) -> int:
    """Sample rate of the first audio track of a media file."""
    from DiffBinaural.utils.video import _open

    container = _open(path)
    try:
        if not container.streams.audio:
            raise BadInputError(path, "no audio stream")
        stream = container.streams.audio[0]
        return int(stream.rate or stream.codec_context.sample_rate)
    finally:
        container.close()
