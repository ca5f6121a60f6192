"""The Stage 1 training loop, shared by ``train_realBinaural.py`` and ``train_fairplay.py``.

One loop for CPU, one GPU, N local GPUs (``--num_gpus``) and torchrun across nodes
(:mod:`BigVGAN.distributed`). Rank 0 alone writes; losses are all-reduced before logging.

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

import logging
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Subset

from BigVGAN import distributed as du
from BigVGAN.checkpoint import atomic_save, safe_load
from DiffBinaural.dataset import build_dataset
from DiffBinaural.model import Stage1Model, batch_inputs, build_diffusion, build_sampler
from DiffBinaural.utils.arguments import load_model_config, model_config, run_dir, save_model_config
from DiffBinaural.utils.ema import EMA
from DiffBinaural.utils.validation import log_validation, validate

log = logging.getLogger("DiffBinaural")


def setup_logging(rank: int, log_file: str | None = None) -> None:
    """Rank 0 logs to stderr (and a file); other ranks stay quiet (aesthetics §3 F.22)."""
    log.handlers.clear()
    log.propagate = False
    if rank != 0:
        log.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    for handler in [logging.StreamHandler()] + ([logging.FileHandler(log_file)] if log_file else []):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _rng_state(gen: torch.Generator) -> dict:
    """Every RNG the loop draws from, as tensors and numbers (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "diffusion": gen.get_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(r: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(r["torch"].cpu())
    gen.set_state(r["diffusion"].cpu())
    n = r["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if r["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in r["cuda"]])


class Stage1Trainer:
    """Builds data, model, optimizer, EMA and logging from the flags; :meth:`fit` trains."""

    def __init__(self, args, *, dataset_kind: str, device: torch.device) -> None:
        self.args, self.device = args, device
        self.rank, self.world = du.get_rank(), du.get_world_size()
        self.is_main = self.rank == 0
        self.dir = run_dir(args)
        self.state_path = os.path.join(self.dir, "state_latest.pth")
        if self.is_main:
            os.makedirs(self.dir, exist_ok=True)
        setup_logging(self.rank, os.path.join(self.dir, "train.log") if self.is_main else None)

        cfg_path = os.path.join(self.dir, "config.json")
        self.cfg = model_config(args)
        if args.resume and os.path.exists(cfg_path):
            self.cfg = load_model_config(cfg_path)  # a resumed run keeps the architecture it started with
        elif self.is_main:
            save_model_config(self.cfg, cfg_path)
        torch.manual_seed(args.seed + self.rank)
        np.random.seed((args.seed + self.rank) % 2**32)

        # --- data -----------------------------------------------------------------------------
        self.train_set = build_dataset(dataset_kind, args, list_path=args.list_train, split="train")
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
        self.diffusion = build_diffusion(self.cfg)
        self.val_sampler = build_sampler(self.diffusion, args)
        # The diffusion's t, noise and condition-dropout draws: one generator per rank, saved on resume.
        self.gen = torch.Generator().manual_seed(args.seed * 1009 + self.rank)

        self.epoch = self.step = self.batch_in_epoch = self.nonfinite = 0
        self.best = math.inf
        self.writer = None
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.dir, "tb"))
        if args.resume:
            self.load_state()
        log.info("train %d clips, val %d clips, %d rank(s) x batch %d, %d optimizer steps/epoch, %.2fM params",
                 len(train_list), len(self.val_set), self.world, args.batch_size_per_gpu, self.steps_per_epoch,
                 sum(p.numel() for p in self.params) / 1e6)

    # --- schedule ------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then x decay_factor every learning_rate_decrease_itr epochs (the original)."""
        a = self.args
        warm = min(1.0, (step + 1) / a.warmup_steps) if a.warmup_steps > 0 else 1.0
        epoch = step // self.steps_per_epoch
        return warm * a.decay_factor ** (epoch // max(1, a.learning_rate_decrease_itr))

    # --- one optimizer step ------------------------------------------------------------------------
    def train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        """Forward/backward over ``grad_accum`` micro-batches, then one guarded optimizer step.

        Returns the logged scalars, or None when the step was skipped for a non-finite loss/gradient.
        """
        self.ddp.train()
        totals: dict[str, float] = {"loss": 0.0}
        buckets: dict[str, list[float]] = {}
        for i, batch in enumerate(micro_batches):
            x0, kwargs = batch_inputs(batch, self.device, target=self.cfg["target"], phase=self.cfg["interaural_phase"])
            sync = i == len(micro_batches) - 1 or self.world == 1
            ctx = self.ddp.no_sync() if not sync else _nullcontext()
            with ctx, torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                     enabled=self.amp_dtype is not None):
                out = self.diffusion.training_losses(self.ddp, x0, model_kwargs=kwargs, generator=self.gen)
                loss = out["loss"] / len(micro_batches)
            self.scaler.scale(loss).backward()
            totals["loss"] += float(loss.detach())
            for key, (s, c) in self.diffusion.bucket_losses(out["t"], out["loss_per_sample"].detach()).items():
                acc = buckets.setdefault(key, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + float(s), acc[1] + float(c)
        self.scaler.unscale_(self.opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.args.grad_clip)
        finite = du.all_ranks_finite(totals["loss"], grad_norm, device=self.device)
        if not finite and self.amp_dtype != torch.float16:
            self.opt.zero_grad(set_to_none=True)
            self.nonfinite += 1
            log.warning("non-finite loss or gradient at epoch %d step %d: step skipped (%d in a row)",
                        self.epoch, self.step, self.nonfinite)
            if self.writer:
                self.writer.add_scalar("train/nonfinite_skips", self.nonfinite, self.step)
            if self.nonfinite > self.args.max_nonfinite:
                raise RuntimeError(f"{self.args.max_nonfinite + 1} non-finite steps in a row at epoch {self.epoch}, "
                                   f"step {self.step}; last good state is {self.state_path}")
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
        scalars = du.all_reduce_mean({"train/loss": totals["loss"]}, self.device)
        scalars.update(bucket_means, **{"train/grad_norm": float(grad_norm),
                                        "train/lr_unet": self.opt.param_groups[0]["lr"]})
        return scalars

    # --- loop ----------------------------------------------------------------------------------
    def fit(self) -> None:
        a = self.args
        from tqdm import tqdm

        done = a.max_steps > 0 and self.step >= a.max_steps
        while self.epoch < a.num_epoch and not done:
            self.sampler.set_epoch(self.epoch)
            self.train_set.set_epoch(self.epoch)
            self.sampler.start = self.batch_in_epoch * a.batch_size_per_gpu
            bar = tqdm(total=self.micro_per_epoch, initial=self.batch_in_epoch, disable=not self.is_main,
                       desc=f"epoch {self.epoch}", leave=False, dynamic_ncols=True)
            pending: list[dict] = []
            t0 = time.time()
            for batch in self.loader:
                pending.append(batch)
                self.batch_in_epoch += 1
                bar.update(1)
                if len(pending) < a.grad_accum:
                    continue
                scalars = self.train_step(pending)
                pending = []
                if scalars is not None:
                    bar.set_postfix(loss=f"{scalars['train/loss']:.4f}")
                    if self.step % a.disp_iter == 0 and self.writer:
                        for k, v in scalars.items():
                            self.writer.add_scalar(k, v, self.step)
                        log.info("epoch %d step %d loss %.4f (%.2f s/step)", self.epoch, self.step,
                                 scalars["train/loss"], (time.time() - t0) / max(1, a.disp_iter))
                        t0 = time.time()
                if a.max_steps > 0 and self.step >= a.max_steps:
                    done = True
                    break
                if scalars is not None and a.save_every > 0 and self.step % a.save_every == 0:
                    self.save_state()
            bar.close()
            if not done or self.batch_in_epoch >= self.micro_per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
            if done or self.epoch % a.eval_epoch == 0:
                self.validate_and_save_best()
            self.save_state()
        if self.writer:
            self.writer.close()
        log.info("done: epoch %d, step %d, best val mel distance %.4f", self.epoch, self.step, self.best)

    # --- validation and checkpoints -------------------------------------------------------------
    def validate_and_save_best(self) -> dict[str, float]:
        metrics, vis = validate(self.ema.module, self.val_sampler, self.val_set, device=self.device,
                                batch_size=self.args.batch_size_per_gpu, seed=self.args.seed,
                                num_vis=self.args.num_vis if self.is_main else 0)
        if self.is_main:
            log_validation(self.writer, metrics, vis, step=self.step)
            log.info("val epoch %d: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), self.epoch)
            unet, frame = self.ema.module.unet.state_dict(), self.ema.module.encoder.state_dict()
            atomic_save(unet, os.path.join(self.dir, "unet_latest.pth"))
            atomic_save(frame, os.path.join(self.dir, "frame_latest.pth"))
            if metrics["val/mel_distance"] < self.best:
                self.best = metrics["val/mel_distance"]
                atomic_save(unet, os.path.join(self.dir, "unet_best.pth"))
                atomic_save(frame, os.path.join(self.dir, "frame_best.pth"))
        self.best = du.broadcast_object(self.best)
        return metrics

    def save_state(self) -> None:
        """Write state_latest.pth (rank 0, atomic) after checking that the DDP replicas agree."""
        du.check_replicas_in_sync(self.model, step=self.step)
        rng = _rng_state(self.gen)
        rngs = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if self.is_main:
            atomic_save({
                "model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
                "step": self.step, "batch_in_epoch": self.batch_in_epoch, "best": self.best,
                "nonfinite": self.nonfinite, "world_size": self.world, "rng": rngs,
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
        self.epoch, self.step, self.batch_in_epoch = s["epoch"], s["step"], s["batch_in_epoch"]
        self.best, self.nonfinite = s["best"], s["nonfinite"]
        if s["world_size"] == self.world:
            _set_rng_state(s["rng"][self.rank], self.gen)
        else:
            log.warning("resuming on %d ranks from a %d-rank run: RNG streams restart", self.world, s["world_size"])
        log.info("resumed from %s: epoch %d, step %d, batch %d", self.state_path, self.epoch, self.step,
                 self.batch_in_epoch)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def train_worker(args, dataset_kind: str) -> None:
    """Entry point of one rank (called by :func:`BigVGAN.distributed.launch`)."""
    device = du.setup()
    try:
        Stage1Trainer(args, dataset_kind=dataset_kind, device=device).fit()
        du.barrier()  # every rank is done before any tears the process group down
    finally:
        du.cleanup()


def run(args, dataset_kind: str) -> None:
    """What the train scripts call: one process per rank, then :func:`train_worker`."""
    import functools

    du.launch(functools.partial(train_worker, dataset_kind=dataset_kind), args, num_gpus=args.num_gpus)
