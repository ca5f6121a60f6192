"""Stage 1 validation: sample the validation crops and compare mels with the ground truth.

Distances are RMSEs of natural-log mels (the vocoder's space), per clip, averaged over clips:

* ``val/mel_distance``      mean of the left and right RMSE (lower is better; selects ``*_best.pth``)
* ``val/mel_distance_left``, ``val/mel_distance_right``
* ``val/diff_distance``     RMSE of the L−R mel difference: the spatial part, which the mono mel alone
  cannot give (the mono-copy baseline predicts a difference of exactly 0)
* ``val/baseline_*``        the same for the mono-copy baseline (the mono mel on both channels)
* ``val/phase_error``       with ``interaural_phase``: mean absolute difference (radians, wrapped to
  [0, π]) between the predicted and the true interaural phase per band and frame, weighted by the true
  coherence ``|γ|`` (diffuse or silent bands, whose phase is meaningless, hardly count); the baseline's
  interaural phase is 0 (``val/baseline_phase_error``)

Every rank samples its shard; sums and counts are all-reduced, so the numbers are the whole job's.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from binaural_core import distributed as du
from binaural_core.audio import LEFT, RIGHT
from binaural_core.extras import need
from DiffBinaural.model import denormalize_mel

KEYS = ("mel_distance_left", "mel_distance_right", "mel_distance", "diff_distance")
PHASE_KEYS = ("phase_error",)


def phase_errors(pred: torch.Tensor | None, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip (sum of |γ|-weighted wrapped angle errors, sum of weights), both (B,), for phase channels
    (B, 2, M, F) (``pred=None``: the mono copy's phase 0)."""
    weight = torch.sqrt(gt[:, 0] ** 2 + gt[:, 1] ** 2)
    angle = torch.atan2(gt[:, 1], gt[:, 0])
    if pred is not None:
        angle = angle - torch.atan2(pred[:, 1], pred[:, 0])
    err = torch.abs(torch.remainder(angle + torch.pi, 2 * torch.pi) - torch.pi)
    return (weight * err).sum(dim=(1, 2)), weight.sum(dim=(1, 2))


def mel_distances(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-clip RMSEs. ``pred``, ``gt``: (B, 2, M, F) ln-mels. Returns (B,) tensors keyed by :data:`KEYS`."""
    rmse = ((pred - gt) ** 2).mean(dim=(2, 3)).sqrt()  # (B, 2)
    diff = ((pred[:, LEFT] - pred[:, RIGHT]) - (gt[:, LEFT] - gt[:, RIGHT])) ** 2
    return {
        "mel_distance_left": rmse[:, LEFT], "mel_distance_right": rmse[:, RIGHT],
        "mel_distance": rmse.mean(dim=1), "diff_distance": diff.mean(dim=(1, 2)).sqrt(),
    }


@torch.no_grad()
def validate(model, sampler, dataset, *, device: torch.device, batch_size: int, seed: int,
             num_vis: int = 0) -> tuple[dict[str, float], list[dict]]:
    """Sample every validation crop with ``model`` (the EMA copy) and measure it.

    Returns (metrics, vis) where vis holds up to ``num_vis`` dicts of numpy (2, M, F) ``gt``/``pred``
    mels for plotting (this rank's first clips).
    """
    from DiffBinaural.model import MEL_CHANNELS, batch_inputs, clip_seed, encode_conditions, sample_mels

    model.eval()
    # Rank r takes items r, r + W, r + 2W, ...: every item exactly once over the ranks. (A
    # DistributedSampler pads the shards by repeating items, which would count those clips twice.)
    shard = list(range(du.get_rank(), len(dataset), du.get_world_size()))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=shard, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))  # leaves the global RNG alone
    has_phase = bool(model.cfg.get("interaural_phase", False))
    sums = torch.zeros(2 * len(KEYS) + 1, dtype=torch.float64, device=device)
    phase_sums = torch.zeros(3, dtype=torch.float64, device=device)  # model error, baseline error, weight
    vis: list[dict] = []
    for batch in loader:
        _, kwargs = batch_inputs(batch, device, target=model.cfg["target"])
        # noise seeded by each clip's name: the same clips get the same noise every validation, on
        # any number of ranks, with any batch size
        gen = [torch.Generator().manual_seed(clip_seed(seed, name)) for name in batch["name"]]
        out = sample_mels(model, sampler, encode_conditions(model, kwargs), generator=gen)
        pred = denormalize_mel(out[:, :MEL_CHANNELS])
        if has_phase:
            gt_phase = batch["phase"].to(device)
            (err, w), (base_err, _) = phase_errors(out[:, MEL_CHANNELS:], gt_phase), phase_errors(None, gt_phase)
            phase_sums += torch.stack([err.sum(), base_err.sum(), w.sum()]).double()
        gt = batch["binaural_mel"].to(device)
        mono = batch["mono_mel"].to(device).expand_as(gt)
        ours, base = mel_distances(pred, gt), mel_distances(mono, gt)
        sums[:len(KEYS)] += torch.stack([ours[k].sum() for k in KEYS]).double()
        sums[len(KEYS):-1] += torch.stack([base[k].sum() for k in KEYS]).double()
        sums[-1] += gt.shape[0]
        for b in range(gt.shape[0]):
            if len(vis) < num_vis:
                vis.append({"name": batch["name"][b], "gt": gt[b].cpu().numpy(), "pred": pred[b].cpu().numpy(),
                            "mono": batch["mono_mel"][b, 0].numpy()})
    sums = du.all_reduce_sum(sums)
    n = max(sums[-1].item(), 1.0)
    metrics = {f"val/{k}": sums[i].item() / n for i, k in enumerate(KEYS)}
    metrics.update({f"val/baseline_{k}": sums[len(KEYS) + i].item() / n for i, k in enumerate(KEYS)})
    if has_phase:
        phase_sums = du.all_reduce_sum(phase_sums)
        w = max(phase_sums[2].item(), 1e-12)
        metrics.update({"val/phase_error": phase_sums[0].item() / w, "val/baseline_phase_error": phase_sums[1].item() / w})
    return metrics, vis


def mel_figure(item: dict):
    """Matplotlib figure: rows GT / predicted, columns left / right / L−R (ln-mel, shared colour scales)."""
    matplotlib = need("matplotlib", "figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt, pred = item["gt"], item["pred"]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5), constrained_layout=True)
    diff_lim = max(abs(gt[LEFT] - gt[RIGHT]).max(), 1e-3)
    for row, (label, mel) in enumerate((("GT", gt), ("predicted", pred))):
        for col, (title, img, kw) in enumerate((
            ("left", mel[LEFT], dict(vmin=-11.5, vmax=2.5, cmap="magma")),
            ("right", mel[RIGHT], dict(vmin=-11.5, vmax=2.5, cmap="magma")),
            ("L − R", mel[LEFT] - mel[RIGHT], dict(vmin=-diff_lim, vmax=diff_lim, cmap="coolwarm")),
        )):
            im = axes[row, col].imshow(img, origin="lower", aspect="auto", interpolation="none", **kw)
            axes[row, col].set_title(f"{label} {title}", fontsize=9)
            if row == 1:
                fig.colorbar(im, ax=axes[:, col], shrink=0.8)
    fig.suptitle(item["name"], fontsize=10)
    return fig


def log_validation(writer, metrics: dict[str, float], vis: list[dict], *, step: int) -> None:
    """TensorBoard scalars and GT-vs-predicted mel images (rank 0)."""
    if writer is None:
        return
    for k, v in metrics.items():
        writer.add_scalar(k, v, step)
    import matplotlib.pyplot as plt

    for i, item in enumerate(vis):
        fig = mel_figure(item)
        writer.add_figure(f"val/mels_{i}", fig, step)
        plt.close(fig)
