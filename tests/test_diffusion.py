"""Diffusion process, samplers (golden tests with oracle / dummy networks) and overlap-add; the EMA is in test_ema.py."""

import math
import os

import pytest
import torch
from conftest import MICRO
from torch import nn

from DiffBinaural.diffusion_utils import GaussianDiffusion, Sampler, bucket_losses
from DiffBinaural.utils.overlap_add import (
    crossfade_weights,
    extract_windows,
    overlap_add,
    pad_frames,
    window_starts,
)

B, M, F = 3, 8, 12


def _cosine_alpha_bar(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t (t = 0…T-1) from the closed form, diffusers' index t = continuous time (t + 1)/T."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([f((t + 1) / T) / f(0) for t in range(T)], dtype=torch.float64)


def _x0(seed: int = 0, b: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 2, M, F, generator=g) * 1.6 - 0.8  # inside [-1, 1]: clipping is a no-op


class OracleModel(nn.Module):
    """Returns the exact ε (or v) of a known x0 under the given schedule, whatever x_t is."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        super().__init__()
        self.x0, self.ac, self.pred = x0, alphas_cumprod, prediction_type

    def forward(self, x_t, t, **kwargs):
        a = self.ac[t].view(-1, 1, 1, 1).to(x_t.dtype)
        eps = (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()
        if self.pred == "sample":
            return self.x0.expand_as(x_t)
        return eps if self.pred == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * self.x0


class RecordingModel(nn.Module):
    """ε̂ = scale · tanh(x_t) + bias(drop_visual); records every call's kwargs."""

    def __init__(self, cond_bias: float = 0.3, uncond_bias: float = -0.2):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.cond_bias, self.uncond_bias = cond_bias, uncond_bias
        self.calls: list[dict] = []

    def forward(self, x_t, t, *, mono_mel, context, context_mask, drop_visual=None, drop_mono=None):
        self.calls.append({"batch": x_t.shape[0], "t": t, "drop_visual": drop_visual, "drop_mono": drop_mono})
        bias = torch.full((x_t.shape[0],), self.cond_bias)
        if drop_visual is not None:
            bias = torch.where(drop_visual, torch.tensor(self.uncond_bias), bias)
        return self.scale * torch.tanh(x_t + mono_mel) + bias.view(-1, 1, 1, 1) + 0 * context.sum()


def _kwargs(b: int = B) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "mono_mel": torch.rand(b, 1, M, F, generator=g),
        "context": torch.randn(b, 4, 6, generator=g),
        "context_mask": torch.zeros(b, 4, dtype=torch.bool),
    }


# ----------------------------------------------------------------------------- schedule / forward process
def test_cosine_schedule_matches_closed_form():
    ac = GaussianDiffusion().alphas_cumprod
    ref = _cosine_alpha_bar()
    assert ac.shape == (1000,)
    assert torch.allclose(ac[:999], ref[:999], rtol=1e-4, atol=1e-9)  # β cap only binds at t = 999
    assert (ac[1:] < ac[:-1]).all()
    assert 1e-10 < ac[-1] < 1e-8 and ac[0] > 0.9999
    assert not torch.allclose(GaussianDiffusion(schedule="linear").alphas_cumprod, ac, atol=1e-2)


def test_add_noise_is_ddpm_eq4_and_v_target():
    d = GaussianDiffusion(prediction_type="v_prediction")
    x0, noise = _x0(), torch.randn(B, 2, M, F)
    t = torch.tensor([0, 500, 999])
    a = _cosine_alpha_bar()[t].clamp(min=d.alphas_cumprod[-1]).view(-1, 1, 1, 1).float()
    x_t = d.q_sample(x0, noise, t)
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-5)
    v = d.target(x0, noise, t)
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-5)
    assert torch.allclose(d.predict_x0(x_t, t, v), x0, atol=1e-3)  # x0 = √ᾱ x_t - √(1-ᾱ) v
    assert torch.equal(GaussianDiffusion().target(x0, noise, t), noise)


def test_training_losses_finite_with_grad_and_buckets():
    d, model = GaussianDiffusion(), RecordingModel()
    out = d.training_losses(model, _x0(), model_kwargs=_kwargs(), generator=torch.Generator().manual_seed(0))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["loss_per_sample"].shape == (B,) and out["t"].shape == (B,) and out["t"].dtype == torch.long
    assert torch.allclose(out["loss"], out["loss_per_sample"].mean())
    out["loss"].backward()
    assert model.scale.grad is not None and model.scale.grad.abs() > 0
    buckets = d.bucket_losses(out["t"], out["loss_per_sample"])
    assert list(buckets) == ["loss_q0", "loss_q1", "loss_q2", "loss_q3"]
    assert sum(c for _, c in buckets.values()) == B
    assert torch.allclose(sum(s for s, _ in buckets.values()), out["loss_per_sample"].sum())
    q = bucket_losses(torch.tensor([0, 249, 250, 999]), torch.ones(4), num_train_timesteps=1000)
    assert [int(c) for _, c in q.values()] == [2, 1, 0, 1]


def test_training_losses_seeded_and_l2():
    d, x0, kw = GaussianDiffusion(loss_type="l2"), _x0(), _kwargs()
    a = d.training_losses(RecordingModel(), x0, model_kwargs=kw, generator=torch.Generator().manual_seed(3))
    b = d.training_losses(RecordingModel(), x0, model_kwargs=kw, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["t"], b["t"])


@pytest.mark.parametrize("loss_type", ["l1", "l2"])
def test_side_weight_weighs_only_the_interaural_error(loss_type):
    """An error common to both ears costs the same with or without the term; an error in one ear costs
    λ · |δ| (λ · δ² for l2) more; a swapped left/right output is penalised through L − R."""
    x0, kw, delta = _x0(), _kwargs(), 0.25

    class Offset(nn.Module):  # the exact x0 (sample prediction) plus a fixed error per channel
        def __init__(self, offset):
            super().__init__()
            self.offset = torch.tensor(offset).view(1, 2, 1, 1)

        def forward(self, x_t, t, **k):
            return x0 + self.offset

    def loss(side_weight, model):
        d = GaussianDiffusion(prediction_type="sample", loss_type=loss_type, side_weight=side_weight)
        return d.training_losses(model, x0, model_kwargs=kw, generator=torch.Generator().manual_seed(0))["loss"]

    p = (lambda e: abs(e)) if loss_type == "l1" else (lambda e: e * e)
    both, left = Offset([delta, delta]), Offset([delta, 0.0])
    assert torch.allclose(loss(2.0, both), loss(0.0, both))
    assert torch.allclose(loss(0.0, left), torch.tensor(p(delta) / 2))
    assert torch.allclose(loss(2.0, left), torch.tensor(p(delta) / 2 + 2.0 * p(delta)))
    swap = lambda x_t, t, **k: x0[:, [1, 0]]  # noqa: E731
    side = (x0[:, 0] - x0[:, 1]) * 2  # the swap's error of L − R is twice L − R
    assert torch.allclose(loss(1.0, swap) - loss(0.0, swap), p(side).flatten(1).mean(1).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="side_weight"):
        GaussianDiffusion(side_weight=-1.0)


def test_drop_masks_rates_independent_and_passed_to_model():
    n = 40000
    d, model = GaussianDiffusion(p_drop_visual=0.1, p_drop_mono=0.1), RecordingModel()
    x0 = torch.zeros(n, 2, 1, 1)
    kw = {"mono_mel": torch.zeros(n, 1, 1, 1), "context": torch.zeros(n, 1, 2), "context_mask": None}
    out = d.training_losses(model, x0, model_kwargs=kw, generator=torch.Generator().manual_seed(0))
    dv, dm = out["drop_visual"], out["drop_mono"]
    assert dv.dtype == torch.bool and dv.shape == (n,)
    assert abs(dv.float().mean() - 0.1) < 0.01 and abs(dm.float().mean() - 0.1) < 0.01
    assert abs((dv & dm).float().mean() - 0.01) < 0.003  # independent: P(both) = 0.1 · 0.1
    assert torch.equal(model.calls[-1]["drop_visual"], dv) and torch.equal(model.calls[-1]["drop_mono"], dm)
    none = GaussianDiffusion(p_drop_visual=0.0, p_drop_mono=0.0).training_losses(model, x0, model_kwargs=kw)
    assert not none["drop_visual"].any() and not none["drop_mono"].any()


# ----------------------------------------------------------------------------- samplers
def test_ddim_timesteps_match_original_grid():
    ts = Sampler(diffusion=GaussianDiffusion(), num_inference_steps=25).timesteps
    assert ts.tolist() == list(range(999, 0, -40))  # the original's 999, 959, …, 39 (then x̂0 at "-1")
    assert ts[0] == 999 and ts[-1] == 39 and (ts[1:] < ts[:-1]).all()
    assert Sampler(diffusion=GaussianDiffusion(), kind="dpmsolver++").timesteps.tolist() == ts.tolist()


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver++"])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_oracle_model_recovers_x0(kind, pred):
    d, x0 = GaussianDiffusion(prediction_type=pred), _x0()
    oracle = OracleModel(x0, d.alphas_cumprod.float(), pred)
    out = Sampler(diffusion=d, kind=kind).sample(
        oracle, x0.shape, model_kwargs={}, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(out, x0, atol=1e-4)


def test_oracle_fails_under_wrong_schedule_or_prediction_type():
    x0, g = _x0(), lambda: torch.Generator().manual_seed(0)  # noqa: E731
    lin = GaussianDiffusion(schedule="linear")
    wrong_sched = OracleModel(x0, lin.alphas_cumprod.float())
    out = Sampler(diffusion=GaussianDiffusion()).sample(wrong_sched, x0.shape, model_kwargs={}, generator=g())
    assert (out - x0).abs().max() > 0.05
    eps_oracle = OracleModel(x0, GaussianDiffusion().alphas_cumprod.float())
    v_sampler = Sampler(diffusion=GaussianDiffusion(prediction_type="v_prediction"))
    # The last steps (ᾱ ≈ 1) are self-correcting, so the error is small, but 10x the 1e-4 tolerance above.
    assert (v_sampler.sample(eps_oracle, x0.shape, model_kwargs={}, generator=g()) - x0).abs().max() > 1e-3


def _reference_ddim(model, x, alphas_cumprod, kwargs, steps=25):
    """The original code's DDIM loop, η = 0, written independently of diffusers."""
    ac = alphas_cumprod.float()
    times = torch.linspace(-1, 999, steps + 1).long().flip(0).tolist()
    for tau, tau_next in zip(times[:-1], times[1:]):
        eps = model(x, torch.full((x.shape[0],), tau, dtype=torch.long), **kwargs)
        x0_hat = ((x - (1 - ac[tau]).sqrt() * eps) / ac[tau].sqrt()).clamp(-1, 1)
        if tau_next < 0:
            return x0_hat
        x = ac[tau_next].sqrt() * x0_hat + (1 - ac[tau_next]).sqrt() * eps
    raise AssertionError("unreachable")


def test_ddim_matches_original_loop_with_dummy_model():
    d, kw = GaussianDiffusion(), _kwargs()
    model = RecordingModel()
    out = Sampler(diffusion=d).sample(
        model, (B, 2, M, F), model_kwargs=kw, generator=torch.Generator().manual_seed(7)
    )
    assert len(model.calls) == 25 and [int(c["t"][0]) for c in model.calls] == list(range(999, 0, -40))
    x_T = torch.randn((B, 2, M, F), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = _reference_ddim(model, x_T, d.alphas_cumprod, kw)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver++"])
def test_seeding(kind):
    s, model, kw, shape = (
        Sampler(diffusion=GaussianDiffusion(), kind=kind, num_inference_steps=10),
        RecordingModel(),
        _kwargs(),
        (B, 2, M, F),
    )
    a = s.sample(model, shape, model_kwargs=kw, generator=torch.Generator().manual_seed(1))
    b = s.sample(model, shape, model_kwargs=kw, generator=torch.Generator().manual_seed(1))
    c = s.sample(model, shape, model_kwargs=kw, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    per_sample = [torch.Generator().manual_seed(i) for i in range(B)]  # one generator per window
    assert s.sample(model, shape, model_kwargs=kw, generator=per_sample).shape == shape


def test_ddim_eta_is_stochastic_but_seeded():
    s, model, kw = (
        Sampler(diffusion=GaussianDiffusion(), eta=1.0, num_inference_steps=10),
        RecordingModel(),
        _kwargs(),
    )
    a = s.sample(model, (B, 2, M, F), model_kwargs=kw, generator=torch.Generator().manual_seed(1))
    b = s.sample(model, (B, 2, M, F), model_kwargs=kw, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_guidance_formula_and_single_pass():
    d, kw, x, t = GaussianDiffusion(), _kwargs(), torch.randn(B, 2, M, F), torch.full((B,), 500)
    model = RecordingModel(cond_bias=0.3, uncond_bias=-0.2)
    one = Sampler(diffusion=d, guidance_scale=1.0).model_output(model, x, t, kw)
    assert model.calls[-1]["batch"] == B and model.calls[-1]["drop_visual"] is None
    assert torch.allclose(one, model(x, t, **kw))
    s = 3.0
    guided = Sampler(diffusion=d, guidance_scale=s).model_output(model, x, t, kw)
    call = model.calls[-1]
    assert call["batch"] == 2 * B and call["drop_visual"].tolist() == [False] * B + [True] * B
    cond, uncond = model(x, t, **kw), model(x, t, **kw, drop_visual=torch.ones(B, dtype=torch.bool))
    assert torch.allclose(guided, uncond + s * (cond - uncond), atol=1e-6)

    class Combined(nn.Module):  # what a guided sampler should effectively integrate
        def forward(self, x_t, t_, **k):
            c = model(x_t, t_, **k)
            u = model(x_t, t_, **k, drop_visual=torch.ones(x_t.shape[0], dtype=torch.bool))
            return u + s * (c - u)

    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    full = Sampler(diffusion=d, guidance_scale=s).sample(model, x.shape, model_kwargs=kw, generator=g())
    ref = Sampler(diffusion=d).sample(Combined(), x.shape, model_kwargs=kw, generator=g())
    assert torch.allclose(full, ref, atol=1e-5)


# ----------------------------------------------------------------------------- overlap-add
@pytest.mark.parametrize("total", [1, 37, 80, 81, 157, 1003])
def test_overlap_add_reconstructs_exactly(total):
    window, hop = 80, 20
    starts = window_starts(total, window, hop)
    assert starts[0] == 0 and starts[-1] + window >= total and starts == sorted(set(starts))
    assert all(b - a <= hop for a, b in zip(starts, starts[1:]))
    if total >= window:
        assert starts[-1] + window == total  # flush with the end
    w = crossfade_weights(window, 20)
    assert (w > 0).all() and w.max() == 1.0
    signal = torch.randn(2, 5, total)
    padded = pad_frames(signal, window)
    assert padded.shape[-1] == max(total, window) and torch.equal(padded[..., :total], signal)
    chunks = extract_windows(padded, starts, window)
    assert chunks.shape == (len(starts), 2, 5, window)
    assert torch.equal(overlap_add(chunks, starts, total, w), signal)
    const = torch.full_like(chunks, 0.3712)
    assert torch.equal(overlap_add(const, starts, total, w), torch.full_like(signal, 0.3712))
    lin = crossfade_weights(window, 40, shape="linear")
    assert torch.equal(overlap_add(chunks, starts, total, lin), signal)


def test_overlap_add_blends_and_rejects_gaps():
    window, starts = 8, [0, 4]
    chunks = torch.stack([torch.zeros(1, 1, window), torch.ones(1, 1, window)])
    out = overlap_add(chunks, starts, 12, crossfade_weights(window, 4))[0, 0]
    assert out[:4].eq(0).all() and out[8:].eq(1).all()
    assert (out[4:8].diff() > 0).all() and (0 < out[4:8]).all() and (out[4:8] < 1).all()  # smooth cross-fade
    with pytest.raises(ValueError):
        overlap_add(chunks, [0, 10], 18, torch.ones(window))  # frames 8-9 uncovered
    with pytest.raises(ValueError):
        window_starts(100, 80, 90)


def test_pad_frames_modes():
    x = torch.arange(5.0).view(1, 5)
    assert pad_frames(x, 8).tolist() == [[0, 1, 2, 3, 4, 4, 4, 4]]
    assert pad_frames(x, 8, "reflect").tolist() == [[0, 1, 2, 3, 4, 3, 2, 1]]
    assert pad_frames(x, 3) is x
    with pytest.raises(ValueError):
        pad_frames(x, 20, "reflect")


def test_generate_clip_on_frame_ranges_equals_the_whole_clip():
    """Pieces of a clip (ranges inside, across and at the ends, batches cut by the range) give exactly
    the whole clip's frames: same windows, batches, seeds and overlap-add sums."""
    from types import SimpleNamespace

    from DiffBinaural.inference.stage1 import generate_clip
    from DiffBinaural.model import Stage1Model, build_sampler
    from DiffBinaural.utils.arguments import model_config, train_parser

    args = train_parser("t").parse_args([
        "--data_root", "-", "--list_train", "-", "--list_val", "-", *MICRO, "--img_size", "16", "--segment_frames", "16"])
    cfg = model_config(args)
    model = Stage1Model(cfg).eval()
    sampler = build_sampler(cfg, SimpleNamespace(sampler="ddim", steps=2, eta=0.0, guidance_scale=1.0))

    def visual_fn(start, n):  # depends on the window's position, as real frames do
        g = torch.Generator().manual_seed(start)
        return {"frames": torch.rand(2, 2, 3, 16, 16, generator=g), "positions": torch.rand(2, 2, 2, generator=g),
                "mask": torch.zeros(2, 2, dtype=torch.bool)}

    mono = torch.randn(1, 80, 75, generator=torch.Generator().manual_seed(0)) - 4
    run = dict(model=model, sampler=sampler, mono_mel=mono, visual_fn=visual_fn, window=16, hop=8, batch_windows=3,
               seed=5, device=torch.device("cpu"))
    whole = generate_clip(**run)
    assert whole.shape == (2, 80, 75)
    for f0, f1 in [(0, 75), (0, 10), (10, 30), (29, 31), (40, 75), (74, 75)]:
        torch.testing.assert_close(generate_clip(**run, frames=(f0, f1)), whole[..., f0:f1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="outside the clip"):
        generate_clip(**run, frames=(70, 80))
    # --num_samples K averages K samples: another result than one sample, equally seeded (same output for
    # the same flags) and equally piecewise
    two = generate_clip(**run, num_samples=2)
    assert not torch.allclose(two, whole) and torch.equal(two, generate_clip(**run, num_samples=2))
    torch.testing.assert_close(generate_clip(**run, num_samples=2, frames=(10, 30)), two[..., 10:30], atol=0, rtol=0)
    # averaging shrinks the sample-to-sample spread: the mean of 4 lies closer to the mean of 8 than one sample does
    four, eight = generate_clip(**run, num_samples=4), generate_clip(**run, num_samples=8)
    assert (four - eight).abs().mean() < (whole - eight).abs().mean()
    # the visual tokens are encoded once per window batch (twice with --flip_tta), whatever the samples
    from DiffBinaural.utils.overlap_add import window_starts

    batches = -(-len(window_starts(75, window=16, hop=8)) // 3)
    calls = []
    hook = model.encoder.register_forward_hook(lambda *_: calls.append(1))
    generate_clip(**run, num_samples=3)
    assert len(calls) == batches > 1
    generate_clip(**run, num_samples=3, flip_tta=True)
    hook.remove()
    assert len(calls) == 3 * batches


@pytest.mark.parametrize("tokens", ["boxes", "both"])
def test_flip_tta_is_mirror_equivariant(tokens):
    """--flip_tta averages each sample with a sample of the mirrored scene mirrored back, so mirroring
    the video mirrors the output exactly (a wrong ear swap, IPD sign, cx map or a scene left unmirrored
    breaks this); it keeps the plain samples and it is another estimate than they are."""
    from types import SimpleNamespace

    from binaural_core.interaural import mels_and_phase
    from binaural_core.mel import MelConfig
    from DiffBinaural.dataset.frames import mirror_visual
    from DiffBinaural.inference.stage1 import generate_clip
    from DiffBinaural.model import Stage1Model, build_sampler, mirror_ears
    from DiffBinaural.utils.arguments import model_config, train_parser

    args = train_parser("t").parse_args([
        "--data_root", "-", "--list_train", "-", "--list_val", "-", *MICRO, "--img_size", "16", "--segment_frames", "16",
        "--interaural_phase", "--target", "residual", "--prediction_type", "sample"])
    cfg = {**model_config(args), "visual_tokens": tokens, "grid": [2, 4], "frame_size": [32, 64]}
    torch.manual_seed(0)
    model = Stage1Model(cfg).eval()
    for p in model.parameters():  # zero-initialised branches (output, cross-attention) would hide the video
        if not p.any():
            torch.nn.init.normal_(p, std=0.02)
    sampler = build_sampler(cfg, SimpleNamespace(sampler="ddim", steps=2, eta=0.0, guidance_scale=1.0))

    def scene(start, n):
        g = torch.Generator().manual_seed(start)
        mask = torch.tensor([[False, True], [False, False]])
        inputs = {"frames": torch.rand(2, 2, 3, 16, 16, generator=g),
                  "positions": torch.rand(2, 2, 2, generator=g) * ~mask[..., None], "mask": mask}
        return inputs if tokens == "boxes" else {**inputs, "scene": torch.rand(2, 3, 32, 64, generator=g)}

    # mirror_ears is the physics of swapping the ears: mels swapped, IPD (angle of L conj R) negated
    noise = torch.randn(4000, generator=torch.Generator().manual_seed(1))
    left, right = noise[6:], 0.5 * noise[:-6]  # left 6 samples late and louder: a large, signed IPD
    mels, phase = mels_and_phase(torch.stack([left, right]), MelConfig())
    swapped = torch.cat(mels_and_phase(torch.stack([right, left]), MelConfig()))[None]
    assert phase[1].abs().amax() > 0.5
    torch.testing.assert_close(mirror_ears(torch.cat([mels, phase])[None]), swapped, atol=1e-5, rtol=1e-4)

    mono = torch.randn(1, 80, 40, generator=torch.Generator().manual_seed(0)) - 4
    run = dict(model=model, sampler=sampler, mono_mel=mono, window=16, hop=8, batch_windows=3, seed=5,
               device=torch.device("cpu"))
    out = generate_clip(visual_fn=scene, flip_tta=True, **run)
    mirrored = generate_clip(visual_fn=lambda s, n: mirror_visual(scene(s, n)), flip_tta=True, **run)
    assert out.shape == (4, 80, 40)
    torch.testing.assert_close(mirrored, mirror_ears(out[None])[0], atol=1e-5, rtol=1e-5)
    assert (out[0] - out[1]).abs().amax() > 1e-3 and out[3].abs().amax() > 1e-3  # not trivially symmetric
    plain = generate_clip(visual_fn=scene, **run)
    assert not torch.allclose(out, plain)
    # the average of a plain and a mirrored sample: the plain half is exactly the --no-flip_tta result
    half = 2 * out - plain
    torch.testing.assert_close(half[:2], mirror_ears(generate_clip(
        visual_fn=lambda s, n: mirror_visual(scene(s, n)), **run)[None])[0][:2], atol=1e-4, rtol=1e-4)


def test_iter_vocode_on_frame_ranges_equals_one_call():
    from BigVGAN.bigvgan import BigVGAN, load_config
    from BigVGAN.vocode import iter_vocode, vocode
    from binaural_core.mel import DEFAULT_CONFIG

    tiny = os.path.join(os.path.dirname(DEFAULT_CONFIG), "bigvgan_tiny.json")
    g = BigVGAN(load_config(tiny)).eval()
    mel = torch.randn(2, 80, 50, generator=torch.Generator().manual_seed(1)) - 4
    whole = vocode(g, mel, hop=256, chunk_frames=8, context_frames=3)
    assert whole.shape == (2, 50 * 256)
    pieces = []
    for f0, f1 in [(0, 16), (16, 24), (24, 50)]:
        m0, m1 = max(0, f0 - 3), min(50, f1 + 3)
        pieces += list(iter_vocode(g, mel[..., m0:m1], hop=256, chunk_frames=8, context_frames=3, frames=(f0, f1),
                                   mel_offset=m0, total=50))
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=0, rtol=0)
    with pytest.raises(ValueError, match="do not cover"):
        next(iter_vocode(g, mel[..., 14:30], hop=256, chunk_frames=8, context_frames=3, frames=(16, 24),
                         mel_offset=14, total=50))
    with pytest.raises(ValueError, match="multiples of chunk_frames"):
        next(iter_vocode(g, mel, hop=256, chunk_frames=8, frames=(4, 16)))

