"""The Stage 1 training loop, shared by ``train_realBinaural.py`` and ``train_fairplay.py``.

One loop for CPU, one GPU, N local GPUs (``--num_gpus``) and torchrun across nodes: the shared
runtime (:mod:`binaural_core.runtime`: launch, exact resume, epoch/step bookkeeping, non-finite guard,
rank-0 logging). Rank 0 alone writes; losses are all-reduced before logging.

Files in ``{ckpt}/{id}/``::

    config.json                      model config (rebuilds the networks: DiffBinaural.model.load_stage1)
    unet_latest.pth  frame_latest.pth   EMA weights of the UNet / visual encoder after the last epoch
    unet_best.pth    frame_best.pth     EMA weights with the lowest validation mel distance
    state_latest.pth                 everything to resume exactly: raw + EMA weights, optimizer, LR
                                     schedule, grad scaler, epoch, step, batch position, best metric,
                                     every rank's RNG states
    tb/                              TensorBoard logs

Every write is atomic (temp file + rename), so a process killed at any moment leaves the previous
complete files. ``--resume`` restarts from ``state_latest.pth`` at the exact batch where it was saved.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Subset

from binaural_core import distributed as du
from binaural_core.checkpoint import atomic_save, safe_load
from binaural_core.run_record import write_run_record
from binaural_core.runtime import StepTimer, TrainingLoop, run_workers, setup_logging
from DiffBinaural.dataset import build_dataset
from DiffBinaural.model import Stage1Model, batch_inputs, build_sampler
from DiffBinaural.utils.arguments import (
    load_model_config,
    model_config,
    resolve_visual,
    run_dir,
    save_model_config,
)
from DiffBinaural.utils.ema import EMA
from DiffBinaural.utils.validation import log_validation, validate

log = logging.getLogger("DiffBinaural")


class Stage1Trainer(TrainingLoop):
    """Builds data, model, optimizer, EMA and logging from the flags; :meth:`fit` (the shared
    :class:`~binaural_core.runtime.TrainingLoop`) trains. What is Stage 1's own: a step is one
    diffusion loss over ``grad_accum`` micro-batches; every ``eval_epoch`` epochs the EMA model is
    validated and its weights saved; ``state_latest.pth`` holds everything to resume."""

    def __init__(self, args, *, dataset_kind: str, device: torch.device) -> None:
        self.args, self.device = args, device
        self.rank, self.world = du.get_rank(), du.get_world_size()
        self.is_main = self.rank == 0
        self.dir = run_dir(args)
        self.state_path = os.path.join(self.dir, "state_latest.pth")
        if self.is_main:
            os.makedirs(self.dir, exist_ok=True)
        self.log = log
        setup_logging(log, self.rank, os.path.join(self.dir, "train.log") if self.is_main else None)

        cfg_path = os.path.join(self.dir, "config.json")
        torch.manual_seed(args.seed + self.rank)
        np.random.seed((args.seed + self.rank) % 2**32)

        # --- data -----------------------------------------------------------------------------
        self.train_set = build_dataset(dataset_kind, args, list_path=args.list_train, split="train")
        self.cfg = model_config(args)
        self.cfg["box_source"] = self.train_set.box_source  # tells inference whether to ask for boxes
        self.cfg = resolve_visual(self.cfg, self.train_set)  # token mode, whole-frame size, grid
        args.frame_size = self.cfg["frame_size"]  # the val set's frames as the train set's
        resumed = bool(args.resume and os.path.exists(cfg_path))
        if resumed:
            self.cfg = load_model_config(cfg_path)  # a resumed run keeps the architecture it started with
        elif self.is_main:
            save_model_config(self.cfg, cfg_path)
        if self.is_main:  # every flag, the command line, the commit, the versions: run.json
            write_run_record(self.dir, args, world_size=self.world, resumed=resumed)
        val_set = build_dataset(dataset_kind, args, list_path=args.list_val, split="val")
        if args.num_val > 0:
            val_set = Subset(val_set, range(min(args.num_val, len(val_set))))
        self.val_set = val_set
        # Each clip K times per epoch, each copy with its own crop and flip (a ConcatDataset of K
        # copies would give K identical items: crops are seeded by the item index).
        self.train_set.set_repeats(args.dup_trainset)
        train_list = self.train_set
        self.sampler = du.ResumableSampler(train_list, num_replicas=self.world, rank=self.rank, shuffle=True,
                                        seed=args.seed, drop_last=True)
        # The loader's own generator: creating an epoch's iterator must not consume the global RNG,
        # or a run resumed mid-epoch would see different dropout draws than an uninterrupted one.
        self.loader = DataLoader(train_list, batch_size=args.batch_size_per_gpu, sampler=self.sampler,
                                 num_workers=args.workers, drop_last=True, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(args.seed))
        self.micro_per_epoch = len(self.sampler) // args.batch_size_per_gpu
        self.steps_per_epoch = max(1, self.micro_per_epoch // args.grad_accum)
        if self.micro_per_epoch == 0:
            raise ValueError(f"{args.list_train}: {len(train_list)} clips give no full batch of "
                             f"{args.batch_size_per_gpu} x {self.world} ranks")

        # --- model, EMA, optimizer --------------------------------------------------------------
        self.model = Stage1Model(self.cfg).to(device)
        self.ema = EMA(self.model, decay=args.ema_decay)
        self.ddp = (DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None)
                    if self.world > 1 else self.model)
        groups = [
            {"params": [p for p in self.model.unet.parameters() if p.requires_grad], "lr": args.lr_unet},
            {"params": [p for p in self.model.encoder.parameters() if p.requires_grad], "lr": args.lr_frame},
        ]
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=args.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
        if device.type != "cuda":
            self.amp_dtype = None  # autocast is a CUDA feature here; CPU runs in fp32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.val_sampler = build_sampler(self.cfg, args)
        self.diffusion = self.val_sampler.diffusion  # one process object for training and validation
        # The diffusion's t, noise and condition-dropout draws: one generator per rank, saved on resume.
        self.gen = torch.Generator().manual_seed(args.seed * 1009 + self.rank)

        self.num_epochs, self.max_steps, self.accumulate = args.num_epoch, args.max_steps, args.grad_accum
        self.max_nonfinite = args.max_nonfinite
        self.init_position()
        self.timer = StepTimer()
        self.best = math.inf
        self.writer = None
        if self.is_main:
            from binaural_core.extras import need

            need("tensorboard", "training (its TensorBoard logs)")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.dir, "tb"))
        if args.resume:
            self.load_state()
        log.info("train %d clips, val %d clips, %d rank(s) x batch %d, %d optimizer steps/epoch, %.2fM params",
                 len(train_list), len(self.val_set), self.world, args.batch_size_per_gpu, self.steps_per_epoch,
                 sum(p.numel() for p in self.params) / 1e6)

    # --- schedule ------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then ``--lr_schedule``: ``step`` (the original's: x decay_factor every
        lr_decay_epochs epochs) or ``cosine`` (half a cosine from 1 to 0 over the run's optimizer steps,
        Loshchilov & Hutter 2017, without restarts: a fixed budget ends at a small learning rate)."""
        a = self.args
        warm = min(1.0, (step + 1) / a.warmup_steps) if a.warmup_steps > 0 else 1.0
        if a.lr_schedule == "cosine":
            total = self.total_steps()
            progress = min(1.0, max(0, step - a.warmup_steps) / max(1, total - a.warmup_steps))
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // self.steps_per_epoch
        return warm * a.decay_factor ** (epoch // max(1, a.lr_decay_epochs))

    def total_steps(self) -> int:
        """Optimizer steps the run will make: ``--max_steps``, or the epochs' steps if that is sooner."""
        by_epochs = self.args.num_epoch * self.steps_per_epoch
        return min(self.args.max_steps, by_epochs) if self.args.max_steps > 0 else by_epochs

    # --- one optimizer step ------------------------------------------------------------------------
    def train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        """Forward/backward over ``grad_accum`` micro-batches, then one guarded optimizer step.

        Returns the logged scalars, or None when the step was skipped for a non-finite loss/gradient.
        """
        self.ddp.train()
        totals: dict[str, float] = {"loss": 0.0}
        buckets: dict[str, list[float]] = {}
        for i, batch in enumerate(micro_batches):
            x0, kwargs = batch_inputs(batch, self.device, target=self.cfg["target"], phase=self.cfg["interaural_phase"],
                                      residual_scale=self.cfg["residual_scale"])
            sync = i == len(micro_batches) - 1 or self.world == 1
            ctx = self.ddp.no_sync() if not sync else contextlib.nullcontext()
            with ctx, torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                     enabled=self.amp_dtype is not None):
                out = self.diffusion.training_losses(self.ddp, x0, model_kwargs=kwargs, generator=self.gen)
                loss = out["loss"]
                if self.cfg.get("binding_weight"):  # the tokens' correspondence loss, set by this forward
                    binding = self.model.unet.binding_loss
                    totals["binding"] = totals.get("binding", 0.0) + float(binding.detach()) / len(micro_batches)
                    loss = loss + self.cfg["binding_weight"] * binding
                loss = loss / len(micro_batches)
            self.scaler.scale(loss).backward()
            totals["loss"] += float(out["loss"].detach()) / len(micro_batches)
            for key, (s, c) in self.diffusion.bucket_losses(out["t"], out["loss_per_sample"].detach()).items():
                acc = buckets.setdefault(key, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + float(s), acc[1] + float(c)
        self.scaler.unscale_(self.opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.args.grad_clip)
        finite = du.all_ranks_finite(totals["loss"], grad_norm, device=self.device)
        if not finite and self.amp_dtype != torch.float16:  # fp16: the grad scaler skips and backs off itself
            self.skip_nonfinite("loss or gradient", self.state_path, self.opt)
            return None
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.ema.update(self.model)
        self.nonfinite = 0
        self.step += 1
        # per-timestep-bucket means: sums and counts are all-reduced, then divided
        bucket_means = {}
        for key, (s, c) in sorted(buckets.items()):
            t = du.all_reduce_sum(torch.tensor([s, c], dtype=torch.float64, device=self.device))
            if t[1] > 0:
                bucket_means[f"train/{key}"] = float(t[0] / t[1])
        scalars = du.all_reduce_mean({f"train/{k}": v for k, v in totals.items()}, self.device)
        scalars.update(bucket_means, **{"train/grad_norm": float(grad_norm),
                                        "train/lr_unet": self.opt.param_groups[0]["lr"]})
        return scalars

    # --- the loop's hooks (binaural_core.runtime.TrainingLoop.fit runs them) ------------------------
    def start_epoch(self, epoch: int) -> None:
        self.train_set.set_epoch(epoch)

    def after_step(self, scalars: dict[str, float]) -> None:
        a = self.args
        if self.step % a.disp_iter == 0 and self.writer:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)
            binding = f" binding {scalars['train/binding']:.4f}" if "train/binding" in scalars else ""
            log.info("epoch %d step %d loss %.4f%s (%.2f s/step)", self.epoch, self.step, scalars["train/loss"],
                     binding, self.timer.per_step(self.step))
        if a.save_every > 0 and self.step % a.save_every == 0 and not (a.max_steps > 0 and self.step >= a.max_steps):
            self.save_state()  # (the last step's state is saved at the end of the epoch, after validation)

    def end_epoch(self, done: bool) -> None:
        last = done or self.epoch >= self.num_epochs  # the run's last epoch is always validated
        if last or self.epoch % self.args.eval_epoch == 0:
            self.validate_and_save_best()
        elif self.is_main:  # the EMA weights of every epoch, validated or not
            self.save_latest_weights()
        self.save_state()

    def finish(self) -> None:
        if math.isfinite(self.best):
            log.info("done: epoch %d, step %d, best val mel distance %.4f", self.epoch, self.step, self.best)
        else:
            log.info("done: epoch %d, step %d (not validated)", self.epoch, self.step)

    # --- validation and checkpoints -------------------------------------------------------------
    def validate_and_save_best(self) -> dict[str, float]:
        metrics, vis = validate(self.ema.module, self.val_sampler, self.val_set, device=self.device,
                                batch_size=self.args.batch_size_per_gpu, seed=self.args.seed,
                                num_vis=self.args.num_vis if self.is_main else 0)
        if self.is_main:
            log_validation(self.writer, metrics, vis, step=self.step)
            log.info("val epoch %d: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), self.epoch)
            unet, frame = self.save_latest_weights()
            if metrics["val/mel_distance"] < self.best:
                self.best = metrics["val/mel_distance"]
                atomic_save(unet, os.path.join(self.dir, "unet_best.pth"))
                atomic_save(frame, os.path.join(self.dir, "frame_best.pth"))
        self.best = du.broadcast_object(self.best)
        return metrics

    def save_latest_weights(self) -> tuple[dict, dict]:
        """Rank 0: ``unet_latest.pth`` / ``frame_latest.pth`` = the EMA weights now; returns them."""
        unet, frame = self.ema.module.unet.state_dict(), self.ema.module.encoder.state_dict()
        atomic_save(unet, os.path.join(self.dir, "unet_latest.pth"))
        atomic_save(frame, os.path.join(self.dir, "frame_latest.pth"))
        return unet, frame

    def save_state(self) -> None:
        """Write state_latest.pth (rank 0, atomic) after checking that the DDP replicas agree."""
        du.check_replicas_in_sync(self.model, step=self.step)
        rngs = self.gather_rng_states({"diffusion": self.gen})
        if self.is_main:
            atomic_save({
                "model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(), **self.position(),
                "best": self.best, "world_size": self.world, "rng": rngs,
            }, self.state_path)
        du.barrier()

    def load_state(self) -> None:
        if not os.path.exists(self.state_path):
            log.info("--resume: no %s yet, starting fresh", self.state_path)
            return
        s = safe_load(self.state_path, map_location=self.device)
        self.model.load_state_dict(s["model"])
        self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.scaler.load_state_dict(s["scaler"])
        self.load_position(s)
        self.best = s["best"]
        self.restore_rng_states(s["rng"], s["world_size"], {"diffusion": self.gen})
        log.info("resumed from %s: epoch %d, step %d, batch %d", self.state_path, self.epoch, self.step,
                 self.batch_in_epoch)


def _build(args, device: torch.device, *, dataset_kind: str) -> Stage1Trainer:
    return Stage1Trainer(args, dataset_kind=dataset_kind, device=device)


def run(args, dataset_kind: str) -> None:
    """What the train scripts call: start the ranks (:func:`binaural_core.runtime.run_workers`) and train."""
    import functools

    run_workers(functools.partial(_build, dataset_kind=dataset_kind), args, num_gpus=args.num_gpus)
