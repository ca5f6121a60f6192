"""Process-group plumbing shared by both stages' trainers (CPU/gloo, one GPU, N GPUs, torchrun).

How a run starts (:func:`launch`):

* under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set): this process is one of the
  launcher's workers, across nodes too; the launcher owns the rendezvous;
* ``--num_gpus N`` with N > 1: N local workers are spawned on a free loopback port;
* otherwise: one process, no process group at all.

The backend is NCCL when CUDA is present and gloo otherwise, so a test can run 2 CPU workers.
``DIFFBINAURAL_DIST_BACKEND=gloo`` forces gloo, which also lets N workers share fewer GPUs (rank r
uses GPU ``r % device_count``; NCCL refuses two ranks on one GPU): ``bench/gpu_check.sh`` runs its
2-process check that way on a one-GPU machine.
Only rank 0 writes files and logs; losses are all-reduced before they are logged.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from binaural_core.audio import BadInputError

# A worker that waits longer than this for its peers (one died, a collective hangs) raises instead
# of blocking forever; mp.spawn then terminates the remaining workers.
DEFAULT_TIMEOUT_S = int(os.environ.get("DIFFBINAURAL_DIST_TIMEOUT", "300"))
BACKEND_ENV = "DIFFBINAURAL_DIST_BACKEND"  # "gloo" or "nccl"; default: nccl with CUDA, else gloo
BAD_INPUT_EXIT = 2  # a spawned worker's exit code for "BadInputError, reported in report_dir"
SHUTDOWN_GRACE_S = 5  # after one worker fails: wait, SIGTERM the others, wait, SIGKILL (torch's default: 30 s)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(worker: Callable[[Any], None], args: Any, *, num_gpus: int) -> None:
    """Run ``worker(args)`` once per rank (see module docstring); the worker calls :func:`setup`."""
    if under_torchrun() or num_gpus <= 1:
        worker(args)
        return
    if torch.cuda.is_available() and torch.cuda.device_count() < num_gpus and backend() != "gloo":
        raise ValueError(f"--num_gpus {num_gpus} but only {torch.cuda.device_count()} CUDA device(s) visible "
                         f"(NCCL needs one GPU per rank; {BACKEND_ENV}=gloo shares them)")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    os.environ["WORLD_SIZE"] = str(num_gpus)
    report_dir = tempfile.mkdtemp(prefix="diffbinaural-launch-")
    try:
        ctx = mp.start_processes(_spawned, args=(worker, args, num_gpus, report_dir), nprocs=num_gpus,
                                 join=False, start_method="spawn")
        while not ctx.join(grace_period=SHUTDOWN_GRACE_S):
            pass
    except mp.ProcessExitedException as exc:
        report = os.path.join(report_dir, f"rank{exc.error_index}.json")
        if exc.exit_code == BAD_INPUT_EXIT and os.path.isfile(report):
            with open(report) as f:
                bad = json.load(f)
            raise BadInputError(bad["path"], bad["problem"]) from None  # one line, as without workers
        raise
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
        for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
            os.environ.pop(key, None)


def _spawned(local_rank: int, worker: Callable[[Any], None], args: Any, world_size: int, report_dir: str) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size))
    try:
        worker(args)
    except BadInputError as err:
        # mp.spawn would print this rank's traceback; hand the one-line error to the parent instead
        with open(os.path.join(report_dir, f"rank{local_rank}.json"), "w") as f:
            json.dump({"path": err.path, "problem": err.problem}, f)
        sys.exit(BAD_INPUT_EXIT)


def backend() -> str:
    """The process-group backend: ``$DIFFBINAURAL_DIST_BACKEND``, else NCCL with CUDA and gloo without."""
    chosen = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if chosen not in ("nccl", "gloo"):
        raise BadInputError(None, f"{BACKEND_ENV}={chosen!r}: expected nccl or gloo")
    return chosen


def setup(*, timeout_s: int = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group when there is one; return this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        name = backend()
        dist.init_process_group(
            backend=name,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if name == "nccl" else None,
        )
    return device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place on a copy); identity without a process group."""
    out = tensor.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each scalar over ranks: what rank 0 logs is the whole job's value, not its own."""
    if not values:
        return {}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    t = all_reduce_sum(t) / get_world_size()
    return dict(zip(keys, t.tolist()))


def all_ranks_finite(*values: float | torch.Tensor, device: torch.device) -> bool:
    """True when every value is finite on every rank. All ranks get the same answer, so they all skip
    (or all take) an optimizer step together; otherwise the replicas would drift apart."""
    ok = all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in values)
    flag = torch.tensor([float(ok)], device=device)
    if dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (exact resume after a kill).

    ``start``: how many of this rank's indices of the current epoch to skip (batches already trained
    before the checkpoint x batch size); the order itself depends only on (seed, epoch), as usual.
    """

    def __init__(self, dataset, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.start = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return super().__len__() - self.start


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_replicas_in_sync(model: torch.nn.Module, *, step: int) -> None:
    """Raise if the ranks' weights differ (DDP keeps them equal; a divergence is a bug, not noise).

    Compares a cheap fingerprint (sum and sum of squares of every parameter) across ranks.
    """
    if not dist.is_initialized() or get_world_size() == 1:
        return
    with torch.no_grad():
        params = [p.detach().double() for p in model.parameters()]
        fp = torch.stack([torch.stack([p.sum(), (p * p).sum()]) for p in params]).flatten()
    lo, hi = fp.clone(), fp.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"DDP replicas diverged at step {step}: weights differ between ranks")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DDP (what is saved and what EMA tracks)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
