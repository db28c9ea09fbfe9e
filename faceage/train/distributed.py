"""One process or many: the device, the rank, and the few collective steps training needs.

Under `torchrun --nproc_per_node N -m faceage train ...` every process joins one torch.distributed group
(NCCL on CUDA, gloo on CPU), N = 1 included (a one-process DDP job). Each rank builds the same global batch
from the same seeded generator and keeps its own contiguous shard, so the global batch, and its randomness,
equal those of a single process; DDP averages the gradients. Only rank 0 writes files and prints; a failure
while it writes is shared with the other ranks (`agree_on_failure`), which would otherwise wait for it
until the collective timeout.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.model.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank among `world_size` processes, its device, and whether it is in
    a process group (launched by torchrun)."""

    rank: int
    world_size: int
    device: torch.device
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistContext:
    """Join the process group when launched by torchrun (one process too) or with WORLD_SIZE > 1; else run
    as a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistContext(0, 1, resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda:"):
        raise FaceageError(f"--device {device}: under torchrun each process takes its own GPU; use cuda.")
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=60),
            device_id=dev if dev.type == "cuda" else None,
        )
    if rank != 0:
        log.setLevel(logging.ERROR)  # rank 0 speaks for the job
    log.info("%d process(es) in a %s process group on %s", world, dist.get_backend(), dev.type)
    return DistContext(rank, world, dev, distributed=True)


def cleanup_distributed() -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (a no-op for a single process)."""
    if ctx.distributed:
        dist.barrier()


def shard(batch: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the whole batch for a single process)."""
    if not ctx.distributed:
        return batch
    return batch.tensor_split(ctx.world_size)[ctx.rank]


def agree(stop: bool, bad_step: int | None, ctx: DistContext) -> tuple[bool, int | None]:
    """Every rank's common view after a sync point: stop when any rank wants to (Ctrl-C), and the earliest
    step at which any rank saw a non-finite loss (None: none did)."""
    if not ctx.distributed:
        return stop, bad_step
    value = torch.tensor([1.0 if stop else 0.0, -math.inf if bad_step is None else -float(bad_step)],
                         device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    wants_stop, earliest = value.tolist()
    return wants_stop > 0, None if math.isinf(earliest) else int(-earliest)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. Ctrl-C seen by one process)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


@contextlib.contextmanager
def agree_on_failure(ctx: DistContext, what: str) -> Iterator[None]:
    """Run a step that may fail on one rank alone (rank 0 writing a checkpoint: disk full) so that every
    rank fails with it: at the end of the block the ranks tell each other whether they failed, and the
    others raise too instead of waiting for the failed one at the next collective (NCCL's timeout is an
    hour). Every rank must enter the block; a no-op for a single process."""
    try:
        yield
    except Exception:
        any_rank(True, ctx)
        raise
    if any_rank(False, ctx):
        raise FaceageError(f"another process of the job failed while {what} (rank 0 writes the run's files; "
                           f"its error says why); fix that, then continue with --resume.")
