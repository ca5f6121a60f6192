"""What only a GPU shows: CUDA numerics equal the CPU's, and mixed precision stays finite and close.

Every test here is marked ``cuda`` and skips without a CUDA device (``bench/gpu_check.sh`` runs them
first on a GPU machine: ``pytest -m cuda``). TF32 is turned off so fp32 comparisons are exact to
float rounding.
"""

from __future__ import annotations

import os

import pytest
import torch

from BigVGAN.bigvgan import BigVGAN, load_config
from binaural_core.mel import MelConfig, mel_spectrogram
from DiffBinaural.modules import UNet

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_UNET = dict(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), groups=8,
                 context_dim=64, num_heads=2)


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _unet_inputs(b: int = 4, frames: int = 32, tokens: int = 6) -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(x_t=torch.randn(b, 2, 80, frames, generator=g), t=torch.randint(0, 1000, (b,), generator=g),
                mono_mel=torch.rand(b, 1, 80, frames, generator=g) * 2 - 1,
                context=torch.randn(b, tokens, 64, generator=g),
                context_mask=torch.zeros(b, tokens, dtype=torch.bool))


def _unet() -> UNet:
    torch.manual_seed(0)
    unet = UNet(**TINY_UNET)
    with torch.no_grad():  # the zero-initialised output layers would make every comparison trivial
        for p in unet.parameters():
            if not p.any():
                p.normal_(std=0.05)
    return unet.eval()


def test_mel_on_cuda_equals_cpu():
    cfg = MelConfig()
    wav = torch.randn(2, 22050, generator=torch.Generator().manual_seed(1)) * 0.3
    torch.testing.assert_close(mel_spectrogram(wav.cuda(), cfg).cpu(), mel_spectrogram(wav, cfg), atol=1e-4, rtol=0)


def test_unet_on_cuda_equals_cpu_and_autocast_stays_close():
    unet, inputs = _unet(), _unet_inputs()
    with torch.no_grad():
        ref = unet(**inputs)
        gpu = unet.cuda()(**{k: v.cuda() for k, v in inputs.items()})
        torch.testing.assert_close(gpu.cpu(), ref, atol=1e-4, rtol=1e-4)
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast("cuda", dtype=dtype):
                low = unet(**{k: v.cuda() for k, v in inputs.items()}).float().cpu()
            assert torch.isfinite(low).all(), dtype
            rel = (low - ref).norm() / ref.norm()
            assert rel < 0.05, (dtype, float(rel))


def test_unet_backward_under_autocast_gives_finite_gradients():
    unet = _unet().cuda().train()
    inputs = {k: v.cuda() for k, v in _unet_inputs().items()}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        unet.zero_grad(set_to_none=True)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            loss = (unet(**inputs) - inputs["x_t"]).abs().mean()
        scaler.scale(loss).backward()
        scaler.unscale_(torch.optim.SGD(unet.parameters(), lr=0.0))
        grads = [p.grad for p in unet.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), dtype


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_grid_tokens_on_cuda_equal_cpu_and_stay_close_under_autocast(pool):
    from DiffBinaural.modules.visual_encoder import VisualEncoder

    torch.manual_seed(0)
    enc = VisualEncoder(backbone="cnn", dim=64, num_frames=3, tokens="both", grid=(4, 8), grid_pool=pool).eval()
    if pool == "attention":
        torch.nn.init.normal_(enc.cell_score.weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    inputs = dict(frames=torch.rand(2, 3, 2, 3, 32, 32, generator=g), positions=torch.rand(2, 3, 2, 2, generator=g),
                  mask=torch.tensor([False, True]).expand(2, 3, 2).clone(), scene=torch.rand(2, 3, 3, 64, 128, generator=g))
    with torch.no_grad():
        ref = enc(**inputs)[0]
        enc.cuda()
        cuda = {k: v.cuda() for k, v in inputs.items()}
        torch.testing.assert_close(enc(**cuda)[0].cpu(), ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = enc(**cuda)[0].float().cpu()
    assert torch.isfinite(low).all() and (low - ref).norm() / ref.norm() < 0.05


def test_vocoder_on_cuda_equals_cpu():
    h = load_config(os.path.join(REPO, "BigVGAN", "configs", "bigvgan_tiny.json"))
    torch.manual_seed(0)
    g = BigVGAN(h).eval()
    g.remove_weight_norm()
    mel = torch.randn(1, h.num_mels, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = g(mel)
        torch.testing.assert_close(g.cuda()(mel.cuda()).cpu(), ref, atol=1e-4, rtol=1e-4)
