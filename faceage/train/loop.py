"""One training epoch and one prediction pass, written so that the device never waits for Python.

Loss terms and errors are summed on the device and read back every SYNC_EVERY steps (progress, NaN check,
Ctrl-C agreement between ranks), not after every step. An epoch can stop at a step boundary (Ctrl-C) and be
continued later from the same step with the same randomness: see `EpochProgress`. The first step of each
`train_epoch` call is timed apart (the device is synchronised once after it): it carries torch.compile's
compilation and cuDNN's autotuning, which img/s leaves out.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from types import FrameType

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import TextColumn
from timm.utils import ModelEmaV3
from torch import nn

from faceage.core.console import log, progress_bar
from faceage.core.errors import FaceageError
from faceage.model.losses import AgeLoss
from faceage.model.network import AgeModel
from faceage.train.distributed import DistContext, agree, shard

SYNC_EVERY = 10


@dataclass
class EpochProgress:
    """Where an epoch stands: steps done, summed loss terms (× images) and absolute errors, images seen and
    seconds taken (all steps; `warmup_*`: the first step of each session, also counted in the totals)."""

    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0
    warmup_images: int = 0
    warmup_seconds: float = 0.0

    def means(self) -> dict[str, float]:
        return {name: total / max(self.images, 1) for name, total in self.sums.items()}

    def img_s(self) -> float:
        """Training images per second without the warm-up steps (all steps when there were no others)."""
        images, seconds = self.images - self.warmup_images, self.seconds - self.warmup_seconds
        if images <= 0 or seconds <= 0:
            images, seconds = self.images, self.seconds
        return images / max(seconds, 1e-9)


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    """Yield a function telling whether Ctrl-C was pressed; a second Ctrl-C interrupts at once."""
    pressed = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        if pressed:
            raise KeyboardInterrupt
        pressed = True
        log.warning("Ctrl-C: saving a checkpoint at the next step (press again to abort without saving)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield lambda: False
        return
    try:
        yield lambda: pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _first_non_finite(losses: list[torch.Tensor], first_step: int) -> tuple[int, float] | None:
    """(step, value) of the first non-finite loss among `losses` (steps first_step, first_step + 1, ...)."""
    values = torch.stack(losses).float().cpu().numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    return (first_step + int(bad[0]), float(values[bad[0]])) if bad.size else None


def _non_finite_error(where: str, step: int, local: tuple[int, float] | None) -> FaceageError:
    value = f"{local[1]}" if local is not None and local[0] == step else "not finite (on another process)"
    return FaceageError(
        f"{where}, step {step}: the loss is {value}; the run keeps the checkpoint of its last good epoch. "
        f"Check the images and ages, or train with a lower --lr into a fresh --out."
    )


@dataclass(frozen=True)
class Learner:
    """What a training step needs: the module it calls (DDP and/or compiled), the model itself (its decoder
    gives the train MAE; the weight average follows it), the loss, the optimiser and the average (or None)."""

    module: nn.Module
    model: AgeModel
    loss_fn: AgeLoss
    optimizer: torch.optim.Optimizer
    ema: ModelEmaV3 | None = None


@dataclass(frozen=True)
class EpochPlan:
    """The batches of one epoch still to train (the caller skipped those already done), how many steps the
    whole epoch has, and its label for messages and the progress bar."""

    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    n_steps: int
    label: str
    steps_before: int = 0  # optimiser steps of the earlier epochs (the weight average's warm-up counts them)


def train_epoch(learner: Learner, plan: EpochPlan, state: EpochProgress, ctx: DistContext,
                stop_requested: Callable[[], bool]) -> bool:
    """Train on `plan.batches` from step `state.step` to the end of the epoch.

    Updates `state` in place; returns True when every rank agreed to stop early (Ctrl-C). Raises
    FaceageError naming the step of a non-finite loss.
    """
    model, loss_fn, optimizer = learner.module, learner.loss_fn, learner.optimizer
    decode = learner.model.decode
    batches, n_steps, where = plan.batches, plan.n_steps, plan.label
    model.train()
    names: list[str] = []
    sums = torch.zeros(0)
    pending: list[torch.Tensor] = []
    first_pending = state.step + 1
    seen = 0  # images this rank trained on in this call
    warmup: tuple[int, float] | None = None  # images and seconds of this call's first step
    started = perf_counter()
    stopped = False
    with progress_bar(TextColumn("{task.fields[status]}"), enabled=ctx.is_main) as bar:
        task = bar.add_task(where, total=n_steps, completed=state.step, status="")
        for x, ages in batches:
            x, ages = shard(x, ctx), shard(ages, ctx)
            with autocast(ctx.device):
                outputs = model(x)
            terms = loss_fn(outputs, ages)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            if learner.ema is not None:
                learner.ema.update(learner.model, step=plan.steps_before + state.step + 1)
            with torch.no_grad():
                if not names:
                    names = list(terms)
                    sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=ctx.device)
                n = ages.shape[0]
                values = [terms[name].detach().double() * n for name in names]
                values.append((decode(outputs.detach()).pred - ages).abs().sum().double())
                sums += torch.stack(values)
            pending.append(terms["loss"].detach())
            state.step += 1
            seen += n
            if warmup is None:
                if ctx.device.type == "cuda":
                    torch.cuda.synchronize(ctx.device)
                warmup = n, perf_counter() - started
            last = state.step == n_steps
            if state.step % SYNC_EVERY and not last and (ctx.distributed or not stop_requested()):
                continue
            local_bad = _first_non_finite(pending, first_pending)
            stop, bad_step = agree(stop_requested(), local_bad[0] if local_bad else None, ctx)
            if bad_step is not None:
                raise _non_finite_error(where, bad_step, local_bad)
            pending, first_pending = [], state.step + 1
            stopped = stop and not last
            bar.update(task, completed=state.step, status=_status(sums, names, seen, ctx, started))
            if stopped:
                break
    state.seconds += perf_counter() - started
    if names and warmup is not None:
        totals = _reduce(torch.cat([sums, sums.new_tensor([seen, warmup[0]])]), ctx).tolist()
        for name, total in zip([*names, "abs_err"], totals, strict=False):
            state.sums[name] = state.sums.get(name, 0.0) + total
        state.images += int(totals[-2])
        state.warmup_images += int(totals[-1])
        state.warmup_seconds += warmup[1]
    return stopped


def _reduce(sums: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a rank's meters over all ranks (the whole global batch), back on the CPU."""
    if ctx.distributed:
        sums = sums.clone()
        dist.all_reduce(sums)
    return sums.cpu()


def _status(sums: torch.Tensor, names: list[str], seen: int, ctx: DistContext, started: float) -> str:
    """Running means of this rank's loss terms and the job's img/s, for the progress bar."""
    local = sums.cpu().tolist()
    text = " ".join(f"{n}={v / max(seen, 1):.3f}" for n, v in zip([*names, "mae"], local, strict=True))
    return f"{text} {seen * ctx.world_size / max(perf_counter() - started, 1e-9):.0f} img/s"


@torch.no_grad()
def predict(model: AgeModel, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
            flip: bool = False) -> dict[str, np.ndarray]:
    """pred, mean, std (and probs for a distribution head) of every image, in the order of `batches`;
    `flip` averages each image with its mirror (`AgeModel.predict`), as predict and export do."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for x, _ in batches:
        with autocast(device):
            prediction = model.predict(x, flip)
        for name in ("pred", "mean", "std", "probs"):
            value = getattr(prediction, name)
            if value is not None:
                parts.setdefault(name, []).append(value.float())
    return {name: torch.cat(chunks).cpu().numpy() for name, chunks in parts.items()}


def epoch_mae(state: EpochProgress) -> float:
    """Train MAE of the epoch (NaN before any image)."""
    return state.sums.get("abs_err", math.nan) / state.images if state.images else math.nan
