"""DiffBinaural: mono audio + video → binaural audio (Stage 1 diffusion on mels, then a renderer or BigVGAN).

    from DiffBinaural import Binauralizer
    b = Binauralizer.from_pretrained(run_dir, renderer="mono", device="cuda")
    stereo = b(mono, sr, video="clip.mp4")             # (2, S) float32
    b.binauralize_file("clip.mp4", "clip_binaural.mp4")
"""


def __getattr__(name: str):
    # lazy: `import DiffBinaural.dataset` (e.g. in a DataLoader worker) does not pay for the pipeline's imports
    if name == "Binauralizer":
        from DiffBinaural.inference.binauralizer import Binauralizer

        return Binauralizer
    raise AttributeError(f"module 'DiffBinaural' has no attribute {name!r}")


__all__ = ["Binauralizer"]
