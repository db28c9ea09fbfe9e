"""What glibc's handling of large blocks costs training and batched prediction on the CPU, in one run.

Each round starts two fresh processes in turn on the same fixed batch of random images: one with glibc's
default (blocks over 32 MiB mmapped and unmapped on free, so each step faults its activations in again)
and one after `faceage.model.device.reuse_freed_memory` (every block from the heap, freed memory kept).
Each times `--steps` training steps (model → mean-variance loss → backward → SGD, as training's loop does)
and as many batched forward passes without gradients (as `predict` with a torch model does), after
`--warmup` untimed ones, and reports images/s, minor page faults a step, the CPU time spent in the kernel
and the peak resident memory. The medians over `--rounds` are printed side by side with their ratio.

    python benchmarks/cpu_allocator.py --backbone tf_efficientnet_lite0 --img-size 160 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from rich.table import Table

from faceage.core.console import console
from faceage.model.device import reuse_freed_memory
from faceage.model.losses import make_loss
from faceage.model.network import build_model
from faceage.train.config import TrainConfig
from faceage.train.optim import make_optimizer

CPU = torch.device("cpu")
SETTINGS = ("glibc default", "freed memory kept")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model (default: lite0)")
    p.add_argument("--img-size", type=int, default=160, help="input side (default 160, the bundled model's)")
    p.add_argument("--batch-size", type=int, default=64, help="images a step (default 64, training's)")
    p.add_argument("--steps", type=int, default=6, help="timed steps of each kind a process (default 6)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of both processes (default 2)")
    p.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    return p.parse_args()


def timed(step: Callable[[], None], steps: int, images: int) -> dict[str, float]:
    """Images/s, minor faults a step and the kernel's share of the CPU time over `steps` calls of `step`."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"images/s": steps * images / seconds,
            "page faults a step": (after.ru_minflt - before.ru_minflt) / steps,
            "kernel's share of the CPU time": system / (user + system)}


def child(args: argparse.Namespace) -> dict[str, float]:
    """One process's figures under the setting `args.child`."""
    if args.child == SETTINGS[1] and not reuse_freed_memory(CPU):
        raise SystemExit("reuse_freed_memory made no setting here (not glibc, or MALLOC_* set): nothing to "
                         "compare")
    torch.manual_seed(0)
    model = build_model(args.backbone, "mv")[0]
    loss_fn, optimizer = make_loss("mv"), make_optimizer(model, TrainConfig(), CPU)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    ages = torch.randint(0, 90, (args.batch_size,)).float()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), ages)["loss"].backward()
        optimizer.step()

    def predict_step() -> None:
        with torch.no_grad():
            model(x)

    figures: dict[str, float] = {}
    for name, step, mode in (("train", train_step, model.train), ("predict", predict_step, model.eval)):
        mode()
        for _ in range(args.warmup):
            step()
        figures |= {f"{name} {key}": value for key, value in timed(step, args.steps, args.batch_size).items()}
    return figures | {"peak resident MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    for round_ in range(args.rounds):
        for setting in SETTINGS:
            console.print(f"[dim]round {round_ + 1}/{args.rounds}: {setting} …[/]", highlight=False)
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", setting],
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"the {setting!r} process failed:\n{done.stderr.strip()}")
            runs[setting].append(json.loads(done.stdout.splitlines()[-1]))
    table = Table(title=f"{args.backbone}, {args.img_size} px, batch {args.batch_size}, one process per "
                        f"setting and round; medians of {args.rounds} rounds")
    for column in ("figure", *SETTINGS, "kept / default"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for key in runs[SETTINGS[0]][0]:
        default, kept = (statistics.median(r[key] for r in runs[s]) for s in SETTINGS)
        shown = [f"{100 * v:.1f} %" if "share" in key else f"{v:,.1f}" for v in (default, kept)]
        table.add_row(key, *shown, f"{kept / default:.2f}×" if default else "")
    console.print(table)


if __name__ == "__main__":
    main()
