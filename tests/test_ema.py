"""Exponential moving average of the weights (DiffBinaural.utils.ema): the math, buffers, state, wrappers, ramp."""

import pytest
import torch
from torch import nn

from DiffBinaural.utils.ema import EMA


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_ema_math_buffers_and_state_round_trip():
    torch.manual_seed(0)
    model, decay = _net(), 0.9
    ema = EMA(model, decay=decay, ramp=False)
    assert all(not p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()(torch.randn(8, 4))  # changes BatchNorm running stats
    ema.update(model)
    new = model.state_dict()
    for name, _ in model.named_parameters():
        assert torch.allclose(
            ema.module.state_dict()[name], decay * old[name] + (1 - decay) * new[name], atol=1e-6
        )
    for name, _ in model.named_buffers():
        assert torch.equal(ema.module.state_dict()[name], new[name])
    assert ema.num_updates == 1

    other = EMA(_net(), decay=decay, ramp=False)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v)


def test_ema_warmup_copies_and_unwraps_wrappers(tmp_path):
    model = _net()
    ema = EMA(nn.DataParallel(model), decay=0.99, warmup_steps=1)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(nn.DataParallel(model))  # warm-up: plain copy
    assert torch.equal(ema.module[0].weight, model[0].weight)
    import torch.distributed as dist

    if not dist.is_available():
        return
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        ema2 = EMA(ddp, decay=0.5, ramp=False)
        with torch.no_grad():
            model[0].weight.add_(2.0)
        ema2.update(ddp)
        assert torch.allclose(ema2.module[0].weight, model[0].weight - 1.0)
    finally:
        dist.destroy_process_group()


def test_ema_ramp_follows_num_updates_rule():
    model = _net()
    ema = EMA(model, decay=0.999)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(model)
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.num_updates = 100_000
    assert ema.current_decay() == 0.999  # capped at the configured decay
