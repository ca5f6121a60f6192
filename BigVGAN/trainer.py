"""The binaural vocoder's training loop, shared by ``train_binaural_mel.py`` and ``train_binaural_both.py``.

One single-channel BigVGAN generator serves both ears: left and right of each clip are separate items
(:class:`BigVGAN.meldataset.BinauralMelDataset`), which keeps the generator identical to NVIDIA's and
lets it start from their pretrained weights (``--pretrained``). Losses follow BigVGAN v2: LSGAN
multi-period + multi-resolution/CQT discriminators, feature matching, (multi-scale) mel L1, plus an
optional silence-aware mel term (``BigVGAN.loss``).

Checkpoints keep NVIDIA's format in ``--checkpoint_path``: ``g_{step:08d}`` = ``{"generator": ...}``
and ``do_{step:08d}`` = discriminators + optimizers + schedulers + steps + epoch, written atomically
by rank 0; the newest complete pair is resumed automatically, at the batch of the epoch where it was
saved (``batch_in_epoch``), so a killed run continues exactly. The config is copied to
``config.json`` beside them. Same process model and loop as Stage 1 (:mod:`binaural_core.runtime`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from BigVGAN.meldataset import BinauralMelDataset, scheduled_probability
from binaural_core import distributed as du
from binaural_core.audio import BadInputError
from binaural_core.checkpoint import atomic_save, atomic_write_text, load_strict, safe_load, scan_checkpoint
from binaural_core.mel import MelConfig, mel_spectrogram
from binaural_core.run_record import write_run_record
from binaural_core.runtime import StepTimer, TrainingLoop, run_workers, setup_logging
from binaural_core.splits import read_split_list

log = logging.getLogger("BigVGAN")
DEFAULT_SCHEDULE = "10:0 30:0.5 60:0.9 60:1.0"  # the original's p(epoch), see scheduled_probability


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Flags of both vocoder scripts (README "Commands")."""
    from binaural_core.mel import DEFAULT_CONFIG

    p.add_argument("--config", default=DEFAULT_CONFIG, help="BigVGAN JSON config (also the mel parameters)")
    p.add_argument("--audio_dir", required=True, help="ground-truth stereo wavs {name}.wav (channel 0 = left)")
    p.add_argument("--checkpoint_path", required=True, help="g_/do_ checkpoints, config.json, tb/")
    p.add_argument("--num_epoch", "--training_epochs", dest="num_epoch", type=int, default=100,
                   help="epochs to train (Stage 1's name; --training_epochs is the original's)")
    p.add_argument("--max_steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--pretrained", default=None,
                   help="start the generator from a file (g_XXXXXXXX or NVIDIA's bigvgan_generator.pt), a folder "
                        "holding bigvgan_generator.pt, or a hub id such as nvidia/bigvgan_v2_22khz_80band_256x "
                        "(downloaded once, cached); ignored when resuming")
    p.add_argument("--pretrained_discriminator", action=argparse.BooleanOptionalAction, default=False,
                   help="with --pretrained: also start the discriminators from the matching do_XXXXXXXX or NVIDIA's "
                        "bigvgan_discriminator_optimizer.pt (published beside their generators)")
    p.add_argument("--val_audio_dir", default=None, help="validation wavs (default: --audio_dir)")
    p.add_argument("--list_train", default=None, dest="train_list",
                   help="split list of the training clips (CSV with a name column, FAIR-Play .h5 or .txt)")
    p.add_argument("--list_val", default=None, dest="val_list", help="split list of the validation clips (same formats)")
    p.add_argument("--train_list", dest="train_list", help=argparse.SUPPRESS)  # the original's names
    p.add_argument("--val_list", dest="val_list", help=argparse.SUPPRESS)
    p.add_argument("--num_val", type=int, default=10, help="validation clips (whole clips, both ears)")
    p.add_argument("--num_gpus", type=int, default=1)
    p.add_argument("--batch_size_per_gpu", type=int, default=None, help="default: config batch_size / ranks")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=None, help="default: the config's seed")
    p.add_argument("--checkpoint_interval", type=int, default=5000)
    p.add_argument("--validation_interval", type=int, default=1000)
    p.add_argument("--disp_iter", "--summary_interval", dest="disp_iter", type=int, default=100,
                   help="log and write TensorBoard scalars every this many steps (Stage 1's name; "
                        "--summary_interval is the original's)")
    p.add_argument("--freeze_step", type=int, default=0, help="train only G for the first K steps")
    p.add_argument("--segment_size", type=int, default=None, help="training crop in samples (default: config)")
    p.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--max_nonfinite", type=int, default=10,
                   help="non-finite losses/gradients in a row that are skipped before training stops")


def load_discriminator(module: torch.nn.Module, state: dict, path: str) -> None:
    """NVIDIA's (or our) discriminator weights into ``module``: every parameter must be there with its
    shape; buffers are taken where their shapes agree (the CQT discriminator's kernels are nnAudio's
    buffers, whose shapes depend on its version, and are rebuilt from the config anyway)."""
    params = dict(module.named_parameters())
    missing = [k for k in params if k not in state]
    wrong = [k for k in params if k in state and tuple(state[k].shape) != tuple(params[k].shape)]
    if missing or wrong:
        what = f"missing {missing[:3]}" if missing else f"shapes differ for {wrong[:3]}"
        raise BadInputError(path, f"discriminator weights do not fit the --config architecture ({what})")
    buffers = dict(module.named_buffers())
    keep = {k: v for k, v in state.items()
            if k in params or (k in buffers and tuple(v.shape) == tuple(buffers[k].shape))}
    module.load_state_dict(keep, strict=False)


def parse_schedule(text: str) -> list[tuple[float, float]]:
    """``"10:0 30:0.5 60:0.9 60:1.0"`` -> [(10, 0), (30, 0.5), (60, 0.9), (60, 1.0)] (sorted epochs)."""
    try:
        points = [(float(e), float(p)) for e, p in (item.split(":") for item in text.split())]
    except ValueError:
        raise BadInputError(None, f"--ss_schedule {text!r}: expected points EPOCH:P separated by spaces") from None
    if not points or any(b[0] < a[0] for a, b in zip(points, points[1:])) or any(not 0 <= p <= 1 for _, p in points):
        raise BadInputError(None, f"--ss_schedule {text!r}: epochs must not decrease and 0 <= P <= 1")
    return points


def read_names(path: str | None) -> list[str] | None:
    """The clips of ``--train_list`` / ``--val_list`` (any split-list format), or None for all."""
    return None if path is None else read_split_list(path)


class VocoderTrainer(TrainingLoop):
    """Generator + discriminators, optimizers, data and logging; :meth:`fit` (the shared
    :class:`~binaural_core.runtime.TrainingLoop`) trains. What is the vocoder's own: a step is one
    discriminator then one generator update; ``g_``/``do_`` pairs every ``--checkpoint_interval``
    steps and validation every ``--validation_interval`` steps (and both at the end).

    Args:
        args: parsed flags (:func:`add_common_args` plus the script's own).
        train_pred_dirs / val_pred_dirs: (left, right) Stage 1 mel dirs or None (ground-truth mels).
        schedule: scheduled-sampling points, or None for a constant p_pred (1 with mel dirs).
    """

    def __init__(self, args, *, train_pred_dirs, val_pred_dirs, schedule, device: torch.device) -> None:
        from BigVGAN.bigvgan import BigVGAN, load_config
        from BigVGAN.discriminators import build_discriminators
        from BigVGAN.loss import GeneratorLoss

        self.args, self.device, self.schedule = args, device, schedule
        self.rank, self.world = du.get_rank(), du.get_world_size()
        self.is_main = self.rank == 0
        self.h = load_config(args.config)
        self.mel_cfg = MelConfig.from_dict(dict(self.h), source=args.config)
        seed = self.h.seed if args.seed is None else args.seed
        torch.manual_seed(seed + self.rank)
        os.makedirs(args.checkpoint_path, exist_ok=True)
        self.log = log
        setup_logging(log, self.rank, os.path.join(args.checkpoint_path, "train.log") if self.is_main else None)
        if self.is_main:
            atomic_write_text(json.dumps(dict(self.h), indent=2) + "\n", os.path.join(args.checkpoint_path, "config.json"))
            write_run_record(args.checkpoint_path, args, world_size=self.world,
                             resumed=scan_checkpoint(args.checkpoint_path, "g_") is not None)

        segment = args.segment_size or self.h.segment_size
        self.train_set = BinauralMelDataset(
            audio_dir=args.audio_dir, cfg=self.mel_cfg, pred_dirs=train_pred_dirs, names=read_names(args.train_list),
            segment_size=segment, p_pred=1.0 if train_pred_dirs else 0.0, seed=seed, skip_bad=args.skip_bad)
        self.val_set = BinauralMelDataset(
            audio_dir=args.val_audio_dir or args.audio_dir, cfg=self.mel_cfg, pred_dirs=val_pred_dirs,
            names=read_names(args.val_list), segment_size=None, p_pred=1.0 if val_pred_dirs else 0.0, seed=seed,
            skip_bad=args.skip_bad)
        bs = args.batch_size_per_gpu or max(1, self.h.batch_size // self.world)
        self.sampler = du.ResumableSampler(self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                           seed=seed, drop_last=True)
        self.loader = DataLoader(self.train_set, batch_size=bs, sampler=self.sampler, num_workers=args.workers,
                                 drop_last=True, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(seed))
        if len(self.loader) == 0:
            raise BadInputError(args.audio_dir, f"{len(self.train_set)} items give no full batch of {bs} x {self.world}")

        self.generator = BigVGAN(self.h).to(device)
        self.discs = build_discriminators(self.h).to(device)
        self.loss = GeneratorLoss(self.h, self.mel_cfg).to(device)
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), self.h.learning_rate,
                                         betas=(self.h.adam_b1, self.h.adam_b2))
        self.optim_d = torch.optim.AdamW(self.discs.parameters(), self.h.learning_rate,
                                         betas=(self.h.adam_b1, self.h.adam_b2))
        # BigVGAN v2 decays the LR every step: 0.9999996^1M ~ 0.67
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=self.h.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=self.h.lr_decay)
        self.num_epochs, self.max_steps, self.accumulate = args.num_epoch, args.max_steps, 1
        self.max_nonfinite = args.max_nonfinite
        self.bar_key = "gen/mel"
        self.init_position()
        self.timer = StepTimer()
        if not self._resume() and args.pretrained:
            self._load_pretrained(args.pretrained)
        ddp = dict(device_ids=[device.index]) if device.type == "cuda" else {}
        self.g = DDP(self.generator, **ddp) if self.world > 1 else self.generator
        # each discriminator wrapped on its own: the D step and the G step call them separately
        self.d = {name: DDP(m, **ddp) if self.world > 1 else m for name, m in self.discs.items()}
        self.writer = None
        if self.is_main:
            from binaural_core.extras import need

            need("tensorboard", "training (its TensorBoard logs)")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(args.checkpoint_path, "tb"))
        log.info("vocoder: %d train items (%d clips x 2 ears), %d val clips, batch %d x %d rank(s), %.2fM G params",
                 len(self.train_set), len(self.train_set.clips), len(self.val_set.clips), bs, self.world,
                 sum(p.numel() for p in self.generator.parameters()) / 1e6)

    # --- checkpoints ----------------------------------------------------------------------------
    def _resume(self) -> bool:
        g_path = scan_checkpoint(self.args.checkpoint_path, "g_")
        do_path = scan_checkpoint(self.args.checkpoint_path, "do_")
        if g_path is None or do_path is None:
            return False
        if os.path.basename(g_path)[2:] != os.path.basename(do_path)[3:]:
            # an interrupted save wrote one file of the newer pair: use the newest complete pair
            steps = sorted({os.path.basename(p)[2:] for p in os.listdir(self.args.checkpoint_path) if p.startswith("g_")}
                           & {os.path.basename(p)[3:] for p in os.listdir(self.args.checkpoint_path) if p.startswith("do_")})
            if not steps:
                return False
            g_path = os.path.join(self.args.checkpoint_path, "g_" + steps[-1])
            do_path = os.path.join(self.args.checkpoint_path, "do_" + steps[-1])
        g, do = safe_load(g_path, self.device), safe_load(do_path, self.device)
        self.generator.load_state_dict(g["generator"])
        self.discs["mpd"].load_state_dict(do["mpd"])
        self.discs["mrd"].load_state_dict(do["mrd"])
        self.optim_g.load_state_dict(do["optim_g"])
        self.optim_d.load_state_dict(do["optim_d"])
        if "sched_g" in do:
            self.sched_g.load_state_dict(do["sched_g"])
            self.sched_d.load_state_dict(do["sched_d"])
        # NVIDIA's do_ files name the step "steps" and lack the batch position (then: the epoch's start)
        self.load_position({**do, "step": do["steps"]})
        if "rng" in do:
            self.restore_rng_states(do["rng"], int(do.get("world_size", len(do["rng"]))))
        log.info("resumed from %s / %s: step %d, epoch %d", g_path, do_path, self.step, self.epoch)
        return True

    def _load_pretrained(self, name: str) -> None:
        """``--pretrained``: a ``g_``/``bigvgan_generator.pt`` file, a folder holding one, or a hub id
        (``nvidia/bigvgan_v2_22khz_80band_256x``); with ``--pretrained_discriminator`` also the MPD and
        MRD/CQT discriminators of the matching ``do_`` file or ``bigvgan_discriminator_optimizer.pt``
        (their optimizer states are not taken: fine-tuning starts AdamW afresh at the config's LR)."""
        from BigVGAN.bigvgan import DISCRIMINATOR_FILE, GENERATOR_FILES
        from binaural_core.hub import resolve

        with_d = self.args.pretrained_discriminator
        path = resolve(name, files=GENERATOR_FILES[1:] + ((DISCRIMINATOR_FILE,) if with_d else ()),
                       what="pretrained vocoder weights")
        if os.path.isdir(path):
            g_path, d_path = os.path.join(path, GENERATOR_FILES[1]), os.path.join(path, DISCRIMINATOR_FILE)
        else:
            folder, base = os.path.split(path)
            g_path = path
            d_path = os.path.join(folder, "do_" + base[2:] if base.startswith("g_") else DISCRIMINATOR_FILE)
        state = safe_load(g_path, self.device)
        state = state.get("generator", state) if isinstance(state, dict) else state
        load_strict(self.generator, state, g_path, config=self.args.config)
        log.info("generator initialised from %s", g_path)
        if with_d:
            do = safe_load(d_path, self.device)
            for part in ("mpd", "mrd"):
                if not isinstance(do, dict) or part not in do:
                    raise BadInputError(d_path, f"not a discriminator checkpoint (no {part!r} state)")
                load_discriminator(self.discs[part], do[part], d_path)
            log.info("discriminators initialised from %s", d_path)

    def save(self) -> None:
        rngs = self.gather_rng_states()
        if self.is_main:
            cp = self.args.checkpoint_path
            # do_ first, g_ last: resume only trusts a pair whose g_ exists, so a kill in between is harmless
            atomic_save({"mpd": self.discs["mpd"].state_dict(), "mrd": self.discs["mrd"].state_dict(),
                         "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
                         "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                         "steps": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                         "nonfinite": self.nonfinite, "world_size": self.world, "rng": rngs},
                        os.path.join(cp, f"do_{self.step:08d}"))
            atomic_save({"generator": self.generator.state_dict()}, os.path.join(cp, f"g_{self.step:08d}"))
        du.barrier()

    # --- one step ------------------------------------------------------------------------------
    def train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        """One discriminator update, then one generator update (BigVGAN's order).

        Returns the scalars, or None when a non-finite loss or gradient made the step be skipped
        (a non-finite D step skips the whole step; a non-finite G step skips G and the LR schedule).
        """
        from BigVGAN.loss import discriminator_loss

        (batch,) = micro_batches
        mel = batch["mel"].to(self.device, non_blocking=True)  # (B, M, F)
        y = batch["audio"].to(self.device, non_blocking=True)  # (B, 1, F * hop)
        y_hat = self.g(mel)
        out: dict[str, float] = {}
        if self.step >= self.args.freeze_step:
            self.optim_d.zero_grad(set_to_none=True)
            loss_d = 0.0
            for name in ("mpd", "mrd"):
                real, fake, _, _ = self.d[name](y, y_hat.detach())
                ld, _, _ = discriminator_loss(real, fake)
                loss_d = loss_d + ld
                out[f"disc/{name}"] = ld.item()
            loss_d.backward()
            grad_d = torch.nn.utils.clip_grad_norm_(self.discs.parameters(), self.h.clip_grad_norm)
            if not du.all_ranks_finite(loss_d.detach(), grad_d, device=self.device):
                return self._skip(self.optim_d, "discriminator")
            out["disc/grad_norm"] = float(grad_d)
            self.optim_d.step()
        self.optim_g.zero_grad(set_to_none=True)
        feats = {name: self.d[name](y, y_hat) for name in ("mpd", "mrd")}
        loss_g, parts = self.loss(y, y_hat, feats, adversarial=self.step >= self.args.freeze_step)
        loss_g.backward()
        grad_g = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), self.h.clip_grad_norm)
        if not du.all_ranks_finite(loss_g.detach(), grad_g, device=self.device):
            return self._skip(self.optim_g, "generator")
        out["gen/grad_norm"] = float(grad_g)
        self.optim_g.step()
        self.sched_g.step()
        self.sched_d.step()
        self.step += 1
        self.nonfinite = 0
        out.update({f"gen/{k}": float(v) for k, v in parts.items()}, **{"gen/total": float(loss_g.detach())})
        out["train/pred_fraction"] = float(batch["used_pred"].float().mean())
        return du.all_reduce_mean(out, self.device)

    def _skip(self, optim: torch.optim.Optimizer, what: str) -> None:
        """Drop a non-finite update of ``what`` (discriminator / generator) and count it."""
        self.skip_nonfinite(f"{what} loss or gradient", scan_checkpoint(self.args.checkpoint_path, "g_"), optim)
        return None

    # --- the loop's hooks (binaural_core.runtime.TrainingLoop.fit runs them) ------------------------
    def start_epoch(self, epoch: int) -> None:
        self.p_pred = scheduled_probability(epoch, self.schedule) if self.schedule else None
        self.train_set.set_epoch(epoch, self.p_pred)
        if self.p_pred is not None and self.writer:
            self.writer.add_scalar("train/p_pred", self.p_pred, self.step)

    def after_step(self, scalars: dict[str, float]) -> None:
        a = self.args
        if self.writer and self.step % a.disp_iter == 0:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)
            self.writer.add_scalar("train/lr_g", self.optim_g.param_groups[0]["lr"], self.step)
            log.info("epoch %d step %d mel %.4f (%.2f s/step)%s", self.epoch, self.step,
                     scalars.get("gen/mel", float("nan")), self.timer.per_step(self.step),
                     "" if self.p_pred is None else f" p_pred {self.p_pred:.2f}")
        if self.step % a.checkpoint_interval == 0:
            self.save()
        if self.step % a.validation_interval == 0:
            self.validate()

    def finish(self) -> None:
        if self.step % self.args.checkpoint_interval:  # not saved/validated at this very step yet
            self.save()
        if self.step % self.args.validation_interval:
            self.validate()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Rank 0: mel L1, PESQ (wide-band, 16 kHz) and MR-STFT on whole validation clips, both ears."""
        if not self.is_main:
            du.barrier()
            return {}
        from binaural_core.extras import need

        auraloss = need("auraloss", "the vocoder's validation (MR-STFT)")

        from binaural_core.audio import resample

        self.generator.eval()
        mrstft = auraloss.freq.MultiResolutionSTFTLoss()
        sums = {"val/mel_l1": 0.0, "val/mrstft": 0.0, "val/pesq": 0.0}
        n = n_pesq = 0
        items = min(len(self.val_set), 2 * self.args.num_val)
        for i in range(items):
            item = self.val_set[i]
            y = item["audio"].to(self.device)
            y_hat = self.generator(item["mel"][None].to(self.device))[0]
            length = min(y.shape[-1], y_hat.shape[-1])
            y, y_hat = y[..., :length], y_hat[..., :length]
            sums["val/mel_l1"] += float((mel_spectrogram(y, self.mel_cfg) - mel_spectrogram(y_hat, self.mel_cfg)).abs().mean())
            sums["val/mrstft"] += float(mrstft(y_hat[None].cpu(), y[None].cpu()))
            try:
                from pesq import pesq

                ref = resample(y[0].cpu().numpy(), self.mel_cfg.sampling_rate, 16000)
                deg = resample(y_hat[0].cpu().numpy(), self.mel_cfg.sampling_rate, 16000)
                sums["val/pesq"] += pesq(16000, ref, deg, "wb")
                n_pesq += 1
            except Exception:  # no utterance detected (music, silence): PESQ is undefined there
                pass
            n += 1
            if self.writer and i < 4:
                self.writer.add_audio(f"val/{item['name']}_{'LR'[item['channel']]}", y_hat.cpu().clamp(-1, 1),
                                      self.step, sample_rate=self.mel_cfg.sampling_rate)
        metrics = {k: v / max(n_pesq if k == "val/pesq" else n, 1) for k, v in sums.items()}
        if n_pesq == 0:
            metrics["val/pesq"] = float("nan")
        if self.writer:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, self.step)
        log.info("validation step %d: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), self.step)
        self.generator.train()
        du.barrier()
        return metrics


def _build(args, device: torch.device, *, train_pred_dirs, val_pred_dirs, schedule) -> VocoderTrainer:
    return VocoderTrainer(args, train_pred_dirs=train_pred_dirs, val_pred_dirs=val_pred_dirs, schedule=schedule,
                          device=device)


def run(args, *, train_pred_dirs=None, val_pred_dirs=None, schedule=None) -> None:
    """What the two scripts call: start the ranks (:func:`binaural_core.runtime.run_workers`) and train."""
    import functools

    np.random.seed(0)
    run_workers(functools.partial(_build, train_pred_dirs=train_pred_dirs, val_pred_dirs=val_pred_dirs,
                                  schedule=schedule), args, num_gpus=args.num_gpus)
