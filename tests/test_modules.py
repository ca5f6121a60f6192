"""Tests of the Stage-1 networks: UNet, visual encoder, attention blocks (tiny sizes, CPU, offline)."""

from __future__ import annotations

import pytest
import torch

from DiffBinaural.modules import UNet, VisualEncoder, build_unet, count_parameters
from DiffBinaural.modules.blocks import (
    CrossAttention,
    SelfAttention,
    attention,
    attention_reference,
    padding_to_attn_mask,
)

CTX = 32
TINY_UNET = dict(
    base_channels=16,
    channel_mults=(1, 2, 4),
    num_res_blocks=1,
    attn_levels=(1, 2),
    groups=8,
    context_dim=CTX,
    num_heads=2,
)
TINY_BACKBONES = {
    "cnn": {"channels": [8, 16], "groups": 4},
    "resnet18": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
    "clip": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    ),
}
B, L, N, IMG = 2, 2, 3, 32


def _randomise_zero_init(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Give the zero-initialised layers random values, so every path reaches the output."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=std)
    return model


def _tiny_unet(**kw) -> UNet:
    torch.manual_seed(0)
    return _randomise_zero_init(UNet(**{**TINY_UNET, **kw})).eval()


def _inputs(b: int = B, m: int = 32, f: int = 32, k: int = L * N, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(b, 2, m, f, generator=g),
        t=torch.randint(0, 1000, (b,), generator=g),
        mono_mel=torch.rand(b, 1, m, f, generator=g) * 2 - 1,
        context=torch.randn(b, k, CTX, generator=g),
        context_mask=torch.zeros(b, k, dtype=torch.bool),
    )


def _visual_batch(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, L, N, 3, IMG, IMG, generator=g)
    positions = torch.rand(B, L, N, 2, generator=g)
    mask = torch.zeros(B, L, N, dtype=torch.bool)
    mask[0, :, 2] = True  # sample 0: last source slot padded in every frame
    mask[1, 1] = True  # sample 1: whole second frame padded
    return frames, positions, mask


# ----------------------------------------------------------------------------------------------- UNet


@pytest.mark.parametrize("frames", [80, 64, 96, 160])
def test_unet_output_shape(frames: int) -> None:
    model = _tiny_unet()
    with torch.no_grad():
        out = model(**_inputs(m=80, f=frames))
    assert out.shape == (B, 2, 80, frames)  # M = 80 mel bins
    assert torch.isfinite(out).all()


def test_unet_rejects_indivisible_frames() -> None:
    model = _tiny_unet()
    assert model.downsample_factor == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        model(**_inputs(m=80, f=82))


def test_fresh_unet_predicts_zero() -> None:
    """Zero-initialised output conv (Nichol & Dhariwal 2021): the untrained model outputs exactly 0."""
    torch.manual_seed(0)
    model = UNet(**TINY_UNET).eval()
    with torch.no_grad():
        assert not model(**_inputs()).any()


def test_default_unet_size_and_config_roundtrip() -> None:
    model = UNet()
    n = count_parameters(model)
    assert 5_000_000 < n < 60_000_000, n
    rebuilt = build_unet(model.config.to_dict())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    with pytest.raises(ValueError, match="unknown UNet config keys"):
        build_unet({**model.config.to_dict(), "base_chanels": 32})
    with pytest.raises(ValueError, match="must divide"):
        UNet(base_channels=16, groups=32)


def test_float_and_long_timesteps_agree() -> None:
    model, inp = _tiny_unet(), _inputs()
    with torch.no_grad():
        a = model(**inp)
        b = model(**{**inp, "t": inp["t"].float()})
    torch.testing.assert_close(a, b)


def test_all_masked_tokens_give_finite_output() -> None:
    """The always-valid null token keeps every softmax row well defined."""
    model, inp = _tiny_unet(), _inputs()
    with torch.no_grad():
        masked = model(**{**inp, "context_mask": torch.ones(B, L * N, dtype=torch.bool)})
        no_ctx = model(**{**inp, "context": None, "context_mask": None})
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked, no_ctx)  # K = 6 masked keys vs K = 0: same up to kernel rounding


@pytest.mark.parametrize("token_audio", [False, True])
def test_drop_visual_equals_all_masked_and_ignores_tokens(token_audio: bool) -> None:
    model, inp = _tiny_unet(token_audio=token_audio), _inputs()
    drop = torch.tensor([True, False])
    with torch.no_grad():
        dropped = model(**inp, drop_visual=drop)
        all_masked = model(**{**inp, "context_mask": torch.ones(B, L * N, dtype=torch.bool)})
        other_tokens = model(**{**inp, "context": torch.randn(B, L * N, CTX) * 10}, drop_visual=drop)
        plain = model(**inp)
    assert torch.equal(dropped[0], all_masked[0])
    assert torch.equal(dropped[0], other_tokens[0])
    torch.testing.assert_close(dropped[1], plain[1])  # the kept sample is untouched
    assert not torch.allclose(dropped[0], plain[0], atol=1e-4)


@pytest.mark.parametrize("token_audio", [False, True])
def test_drop_mono_ignores_mono_mel(token_audio: bool) -> None:
    """With ``token_audio`` the tokens' audio summary must come from the dropped (null) mono too."""
    model, inp = _tiny_unet(token_audio=token_audio), _inputs()
    drop = torch.tensor([True, False])
    other = {**inp, "mono_mel": torch.rand_like(inp["mono_mel"])}
    with torch.no_grad():
        a = model(**inp, drop_mono=drop)
        b = model(**other, drop_mono=drop)
    assert torch.equal(a[0], b[0])
    assert not torch.allclose(a[1], b[1], atol=1e-4)


def test_token_audio_starts_as_the_plain_model_and_then_hears_the_mono() -> None:
    """Zero-initialised, the audio-aware tokens change nothing; trained (random) weights make the tokens,
    and only them, depend on the mono: with every token masked the two models agree again."""
    inp = _inputs()
    plain = _tiny_unet()
    aware = UNet(**{**TINY_UNET, "token_audio": True}).eval()
    missing, unexpected = aware.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("token_audio.") for k in missing)
    with torch.no_grad():
        torch.testing.assert_close(aware(**inp), plain(**inp))
        _randomise_zero_init(aware.token_audio)
        assert not torch.allclose(aware(**inp), plain(**inp), atol=1e-4)
        masked = {**inp, "context_mask": torch.ones(B, L * N, dtype=torch.bool)}
        torch.testing.assert_close(aware(**masked), plain(**masked))
    assert build_unet(aware.config.to_dict()).token_audio is not None


def test_binding_loss_scores_valid_tokens_against_the_heard_mono() -> None:
    """The correspondence loss reads only valid tokens, asks about the mono as recorded (a guidance drop of
    the UNet's mono must not turn it into a question about the null mono), and needs a second clip."""
    torch.manual_seed(0)
    model = UNet(**{**TINY_UNET, "token_audio": True, "token_binding": True}).train()
    _randomise_zero_init(model)
    inp = _inputs(b=3, k=4)
    inp["context_mask"][0, 2:] = True
    model(**inp)
    base = model.binding_loss.detach().clone()
    assert 0.0 < float(base) < 10.0
    garbage = inp["context"].clone()
    garbage[0, 2:] = 1e4  # padded tokens' content
    model(**{**inp, "context": garbage})
    torch.testing.assert_close(model.binding_loss, base)
    model(**inp, drop_mono=torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(model.binding_loss, base)
    model(**{**inp, "mono_mel": inp["mono_mel"].flip(0)})  # other clips' mono: other pairs, another loss
    assert not torch.allclose(model.binding_loss, base)
    model(**_inputs(b=1, k=4))
    assert float(model.binding_loss) == 0.0
    with pytest.raises(ValueError, match="needs token_audio"):
        UNet(**{**TINY_UNET, "token_binding": True})


# ------------------------------------------------------------------------------------- visual encoder


def _tiny_encoder(backbone: str, **kw) -> VisualEncoder:
    torch.manual_seed(0)
    return VisualEncoder(
        backbone=backbone, dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES[backbone], **kw
    )


@pytest.mark.parametrize("backbone", ["cnn", "resnet18", "clip"])
def test_visual_encoder_shapes_and_mask(backbone: str) -> None:
    enc = _tiny_encoder(backbone).eval()
    frames, positions, mask = _visual_batch()
    tokens, token_mask = enc(frames, positions, mask)
    assert tokens.shape == (B, L * N, CTX)
    assert torch.equal(token_mask, mask.reshape(B, L * N))
    assert not tokens[token_mask].any() and tokens[~token_mask].abs().sum(-1).gt(0).all()
    # Another crop size goes through the resize path (clip: positional-embedding interpolation).
    assert enc(frames[..., :24, :24], positions, mask)[0].shape == (B, L * N, CTX)
    rebuilt = VisualEncoder(**enc.checkpoint_config())
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt.eval()(frames, positions, mask)[0], tokens)


def test_frozen_backbone_stays_eval() -> None:
    clip = _tiny_encoder("clip")  # frozen by default
    assert clip.freeze_backbone and not any(p.requires_grad for p in clip.backbone.parameters())
    clip.train()
    assert clip.training and clip.mlp.training and not clip.backbone.training
    resnet = _tiny_encoder("resnet18").train()  # trainable by default
    assert all(p.requires_grad for p in resnet.backbone.parameters()) and resnet.backbone.training


@pytest.mark.parametrize("backbone", ["resnet18", "clip"])
def test_visual_encoder_loads_local_folder(backbone: str, tmp_path) -> None:
    """The from_pretrained route works offline from a save_pretrained folder."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, ResNetConfig, ResNetModel

    torch.manual_seed(3)
    if backbone == "clip":
        ref = CLIPVisionModel(CLIPVisionConfig(**TINY_BACKBONES["clip"]))
    else:
        ref = ResNetModel(ResNetConfig(**TINY_BACKBONES["resnet18"]))
    ref.save_pretrained(tmp_path)
    enc = VisualEncoder(backbone=backbone, dim=CTX, num_frames=L, pretrained=str(tmp_path)).eval()
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(enc.backbone.state_dict()[name], p, rtol=0, atol=0)
    frames, positions, mask = _visual_batch()
    assert enc(frames, positions, mask)[0].shape == (B, L * N, CTX)


# ---------------------------------------------------------------------------- encoder + UNet together


def test_masked_slots_do_not_matter_valid_slots_do() -> None:
    enc = _randomise_zero_init(_tiny_encoder("cnn")).eval()
    model = _tiny_unet()
    inp = _inputs()
    frames, positions, mask = _visual_batch()

    def run(fr: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        tokens, token_mask = enc(fr, pos, mask)
        return model(**{**inp, "context": tokens, "context_mask": token_mask})

    with torch.no_grad():
        base = run(frames, positions)
        fr2, pos2 = frames.clone(), positions.clone()
        fr2[0, :, 2], pos2[0, :, 2] = torch.rand_like(fr2[0, :, 2]), torch.rand_like(pos2[0, :, 2])  # masked
        fr2[1, 1], pos2[1, 1] = 1.0 - fr2[1, 1], float("nan")  # masked (NaN must not leak)
        assert torch.equal(run(fr2, pos2), base)
        pos3 = positions.clone()
        pos3[0, 0, 0] = 1.0 - pos3[0, 0, 0]  # a valid slot moves
        moved = run(frames, pos3)
    assert not torch.allclose(moved[0], base[0], atol=1e-5)
    torch.testing.assert_close(moved[1], base[1])


def test_all_padded_batch_keeps_encoder_in_graph() -> None:
    """With no valid crop the backbone still gets (zero) gradients, so DDP sees every parameter."""
    enc = _tiny_encoder("cnn").train()
    frames, positions, _ = _visual_batch()
    tokens, _ = enc(frames, positions, torch.ones(B, L, N, dtype=torch.bool))
    assert not tokens.any()
    tokens.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_gradients_reach_visual_encoder() -> None:
    enc = _randomise_zero_init(_tiny_encoder("cnn")).train()
    model = _tiny_unet().train()
    frames, positions, mask = _visual_batch()
    tokens, token_mask = enc(frames, positions, mask)
    inp = {**_inputs(), "context": tokens, "context_mask": token_mask}
    model(**inp).pow(2).mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -------------------------------------------------------------------------------------------- attention


def test_padding_mask_convention() -> None:
    pad = torch.tensor([[False, True, False]])
    assert torch.equal(padding_to_attn_mask(pad), torch.tensor([[[[True, False, True]]]]))


def test_sdpa_matches_reference_attention() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 50, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)
    pad = torch.rand(2, 7) < 0.5
    pad[:, 0] = False  # the null-token slot is always valid
    m = padding_to_attn_mask(pad)
    torch.testing.assert_close(attention(q, k, v, m), attention_reference(q, k, v, m), rtol=1e-5, atol=1e-5)

    x, ctx = torch.randn(2, 16, 6, 10), torch.randn(2, 7, CTX)
    layers = [
        CrossAttention(channels=16, context_dim=CTX, num_heads=2, groups=4),
        SelfAttention(channels=16, groups=4),
    ]
    for layer in layers:
        _randomise_zero_init(layer)
        args = (x, ctx, m) if isinstance(layer, CrossAttention) else (x,)
        fused = layer(*args)
        layer.attn_impl = "math"
        torch.testing.assert_close(fused, layer(*args), rtol=1e-5, atol=1e-5)

    model, inp = _tiny_unet(), _inputs()
    inp["context_mask"][0, :4] = True
    with torch.no_grad():
        fused = model(**inp)
        model.set_attention_impl("math")
        torch.testing.assert_close(fused, model(**inp), rtol=1e-4, atol=1e-5)
