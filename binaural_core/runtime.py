"""One training runtime for both stages (``DiffBinaural/training/trainer.py`` and ``BigVGAN/trainer.py``).

What every training run needs and neither stage owns:

* **launch** (:func:`run_workers`): one process, ``--num_gpus N`` local workers, or the ranks of
  ``torchrun`` (:mod:`binaural_core.distributed`); each rank joins the process group, runs, waits
  for the others, and leaves it;
* **the loop** (:meth:`TrainingLoop.fit`): epochs, optimizer steps and the batch position inside an
  epoch, gradient accumulation, ``max_steps``, and a resumed run that continues at the exact batch
  where it was saved (the sampler skips what was trained);
* **the non-finite guard** (:meth:`TrainingLoop.skip_nonfinite`): a step whose loss or gradient is
  not finite on any rank is dropped and counted; too many in a row stop the run, naming the position
  and the last good checkpoint;
* **every rank's RNG states** (:func:`rng_state`, :meth:`TrainingLoop.gather_rng_states`): torch,
  numpy, CUDA and the trainer's own generators, as tensors and numbers (``weights_only`` loadable);
* **rank-0 logging** (:func:`setup_logging`) with a progress bar only when stderr is a terminal
  (:func:`progress_bar`), so log files get the periodic log lines and not a bar redrawn per batch.

A trainer subclasses :class:`TrainingLoop` and keeps only what is its own: what a step is
(:meth:`~TrainingLoop.train_step`), what is validated and saved when (:meth:`~TrainingLoop.after_step`,
:meth:`~TrainingLoop.end_epoch`, :meth:`~TrainingLoop.finish`), and what its checkpoints hold.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from binaural_core import distributed as du


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for the machine line beside any
    speed figure (bench, listening page)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def machine() -> str:
    """CPU model, core count, the vector ISA torch uses and its threads (and the GPU when there is one):
    the one machine line printed beside every speed figure (bench) and on the listening page."""
    # the ISA that oneDNN and torch.compile use here (AVX512 / AVX2 / ...): speed ratios depend on it
    text = (f"{cpu_name()}, {os.cpu_count()} CPU cores, {torch.backends.cpu.get_cpu_capability()}, "
            f"torch threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return text


# --- logging -------------------------------------------------------------------------------------
def setup_logging(logger: logging.Logger, rank: int, log_file: str | None = None) -> None:
    """Rank 0 logs INFO to stderr (and ``log_file``) as ``[HH:MM:SS] message``; other ranks stay quiet."""
    logger.handlers.clear()
    logger.propagate = False
    if rank != 0:
        logger.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    for handler in [logging.StreamHandler()] + ([logging.FileHandler(log_file)] if log_file else []):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _NoBar:
    """What :func:`progress_bar` returns when nothing should be drawn."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(*, total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar on rank 0 when stderr is a terminal; otherwise nothing (log lines carry progress)."""
    if not (enabled and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


# --- RNG states ----------------------------------------------------------------------------------
def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict:
    """Every RNG a rank draws from: torch, numpy, CUDA and ``generators`` (by name), as tensors and numbers."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    state.update({name: g.get_state() for name, g in (generators or {}).items()})
    return state


def set_rng_state(state: dict | torch.Tensor, generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore :func:`rng_state` (a bare tensor, from older vocoder checkpoints, is torch's state alone)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state.cpu())
        return
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])
    for name, g in (generators or {}).items():
        g.set_state(state[name].cpu())


# --- the loop ------------------------------------------------------------------------------------
class TrainingLoop:
    """The loop both trainers run; subclasses set the attributes below in ``__init__`` and implement
    the hooks.

    Attributes (set by the subclass):
        log: the stage's logger (set up with :func:`setup_logging`).
        loader: the training DataLoader; its sampler a :class:`~binaural_core.distributed.ResumableSampler`.
        sampler: that sampler.
        num_epochs, max_steps: stop after this many epochs, or optimizer steps (0 = no limit).
        accumulate: micro-batches per optimizer step.
        max_nonfinite: non-finite steps in a row that stop the run.
        rank, world, is_main, device, writer (TensorBoard writer on rank 0, else None).
    State (saved in checkpoints by the subclass, restored before :meth:`fit`):
        epoch, step, batch_in_epoch (micro-batches of ``epoch`` already trained), nonfinite.
    """

    log: logging.Logger
    writer: Any = None

    def init_position(self) -> None:
        self.epoch = self.step = self.batch_in_epoch = self.nonfinite = 0

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "nonfinite": self.nonfinite}

    def load_position(self, state: dict) -> None:
        """Restore :meth:`position` from a checkpoint (keys that an older file lacks keep their default)."""
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self.nonfinite = int(state.get("nonfinite", 0))

    bar_key = "train/loss"  # the scalar shown on the progress bar

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches in a whole epoch (whatever part of it the sampler skips)."""
        return (len(self.sampler) + self.sampler.start) // self.loader.batch_size

    # --- hooks --------------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Before the epoch's first batch (e.g. the datasets' crops of this epoch)."""

    def train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        """One optimizer step; the logged scalars (all-reduced), or None when it was skipped."""
        raise NotImplementedError

    def after_step(self, scalars: dict[str, float]) -> None:
        """After a step that was taken (periodic logging, checkpoints, validation)."""

    def end_epoch(self, done: bool) -> None:
        """After the epoch's last batch, or after the step that reached ``max_steps`` (``done``)."""

    def finish(self) -> None:
        """After the loop."""

    # --- the loop itself ----------------------------------------------------------------------
    def fit(self) -> None:
        done = self.max_steps > 0 and self.step >= self.max_steps
        while self.epoch < self.num_epochs and not done:
            self.start_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            self.sampler.start = self.batch_in_epoch * self.loader.batch_size  # resumed part-way: skip what was trained
            total = self.batches_per_epoch
            bar = progress_bar(total=total, initial=self.batch_in_epoch, desc=f"epoch {self.epoch}",
                               enabled=self.is_main)
            pending: list[dict] = []
            for batch in self.loader:
                pending.append(batch)
                self.batch_in_epoch += 1
                bar.update(1)
                if len(pending) < self.accumulate:
                    continue
                scalars = self.train_step(pending)
                pending = []
                if scalars is not None:
                    bar.set_postfix(**{self.bar_key.split("/")[-1]: f"{scalars.get(self.bar_key, float('nan')):.4f}"})
                    self.after_step(scalars)
                if self.max_steps > 0 and self.step >= self.max_steps:
                    done = True
                    break
            bar.close()
            if not done or self.batch_in_epoch >= total:
                self.epoch += 1
                self.batch_in_epoch = 0
            self.end_epoch(done)
        self.finish()
        if self.writer:
            self.writer.close()

    # --- shared pieces of a step --------------------------------------------------------------
    def skip_nonfinite(self, what: str, last_good: str | None, *optimizers: torch.optim.Optimizer) -> None:
        """Drop a non-finite update (``what``: "loss or gradient", "generator loss or gradient", ...),
        count it, and stop after ``max_nonfinite`` in a row, naming the position and ``last_good``."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.nonfinite += 1
        self.log.warning("non-finite %s at epoch %d step %d: step skipped (%d in a row)",
                         what, self.epoch, self.step, self.nonfinite)
        if self.writer:
            self.writer.add_scalar("train/nonfinite_skips", self.nonfinite, self.step)
        if self.nonfinite > self.max_nonfinite:
            raise RuntimeError(f"{self.max_nonfinite + 1} non-finite steps in a row at epoch {self.epoch}, "
                               f"step {self.step}; last good checkpoint is {last_good}")

    def gather_rng_states(self, generators: dict[str, torch.Generator] | None = None) -> list[dict]:
        """Every rank's :func:`rng_state`, in rank order (collective: all ranks call it)."""
        state = rng_state(generators)
        if self.world == 1:
            return [state]
        states: list = [None] * self.world
        dist.all_gather_object(states, state)
        return states

    def restore_rng_states(self, states: list, saved_world: int,
                           generators: dict[str, torch.Generator] | None = None) -> None:
        """This rank's entry of :meth:`gather_rng_states`; another world size restarts the streams."""
        if saved_world == self.world and states:
            set_rng_state(states[self.rank], generators)
        else:
            self.log.warning("resuming on %d rank(s) from a %d-rank run: RNG streams restart", self.world, saved_world)


class StepTimer:
    """Seconds per step between two log lines."""

    def __init__(self) -> None:
        self.t0, self.step0 = time.time(), 0

    def per_step(self, step: int) -> float:
        now, steps = time.time(), max(1, step - self.step0)
        out = (now - self.t0) / steps
        self.t0, self.step0 = now, step
        return out


# --- launch --------------------------------------------------------------------------------------
def _worker(args: Any, build: Callable[[Any, torch.device], TrainingLoop]) -> None:
    device = du.setup()
    loop = None
    try:
        loop = build(args, device)
        loop.fit()
        du.barrier()  # every rank is done before any tears the process group down
    finally:
        # The trainers sit in reference cycles, so without a collection their DDP wrapper, which holds
        # the process group, outlives destroy_process_group; the group was then freed during interpreter
        # shutdown, and gloo's threads aborted the rank now and then ("terminate called without an
        # active exception", SIGABRT, after a finished run).
        del loop
        gc.collect()
        du.cleanup()


def run_workers(build: Callable[[Any, torch.device], TrainingLoop], args: Any, *, num_gpus: int) -> None:
    """Start the ranks (one process, ``num_gpus`` local workers or torchrun's) and on each one
    ``build(args, device).fit()``; ``build`` must be picklable (a module-level function or a partial)."""
    du.launch(functools.partial(_worker, build=build), args, num_gpus=num_gpus)
