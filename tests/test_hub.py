"""Pretrained weights by hub id or local folder, offline: a Hugging Face cache laid out as the hub's snapshot
(refs/main -> snapshots/<commit>/files) stands in for NVIDIA's BigVGAN repository, and unreachable ids are
one line saying what to pass."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from BigVGAN.bigvgan import DISCRIMINATOR_FILE, BigVGAN, load_config
from BigVGAN.discriminators import build_discriminators
from BigVGAN.trainer import VocoderTrainer
from BigVGAN.vocode import load_generator
from binaural_core.audio import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "BigVGAN", "configs", "bigvgan_tiny.json")
REPO_ID = "nvidia/bigvgan_tiny_for_tests"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An offline HF cache holding REPO_ID with a generator, its config and discriminators + optimizers."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(0)
    h = load_config(TINY)
    generator = BigVGAN(h)
    generator.save_pretrained(str(snapshot))
    discs = build_discriminators(h)
    with torch.no_grad():
        for p in discs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    torch.save({"mpd": discs["mpd"].state_dict(), "mrd": discs["mrd"].state_dict(), "optim_g": {}, "optim_d": {},
                "steps": 5_000_000, "epoch": 100}, snapshot / DISCRIMINATOR_FILE)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf  # read at its import: an earlier test may have imported it

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    return SimpleNamespace(generator=generator, discs=discs, snapshot=snapshot, h=h)


def test_generator_by_hub_id_from_the_cache(hub):
    model = BigVGAN.from_pretrained(REPO_ID)
    for k, v in hub.generator.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    generator, _, mel_cfg = load_generator(REPO_ID)  # --vocoder / --checkpoint_file take it too
    assert mel_cfg.hop_size == hub.h.hop_size and not generator.training
    assert BigVGAN.from_pretrained(str(hub.snapshot)).state_dict().keys() == model.state_dict().keys()  # a folder


def test_trainer_pretrained_takes_generator_and_discriminators_from_the_hub(hub):
    h = load_config(TINY)
    fake = SimpleNamespace(args=SimpleNamespace(pretrained_discriminator=True, config=TINY), device="cpu",
                           generator=BigVGAN(h), discs=build_discriminators(h))
    VocoderTrainer._load_pretrained(fake, REPO_ID)
    for k, v in hub.generator.state_dict().items():
        assert torch.equal(fake.generator.state_dict()[k], v), k
    for part in ("mpd", "mrd"):
        for k, v in hub.discs[part].named_parameters():
            assert torch.equal(dict(fake.discs[part].named_parameters())[k], v), (part, k)


def test_unreachable_hub_ids_say_what_to_pass(hub):
    for call in (lambda: BigVGAN.from_pretrained("nvidia/not_cached_here"),
                 lambda: load_generator("nvidia/not_cached_here")):
        with pytest.raises(BadInputError, match="hf download nvidia/not_cached_here --local-dir"):
            call()
    with pytest.raises(BadInputError, match="checkpoint not found"):
        load_generator("runs/voc/g_00000050")  # a path that is not there is not sent to the hub


def test_image_encoder_offline_says_what_to_pass(hub):
    from DiffBinaural.modules.visual_encoder import VisualEncoder

    with pytest.raises(BadInputError, match="--pretrained_frame FOLDER"):
        VisualEncoder(backbone="resnet18", pretrained="microsoft/not-cached-here")
