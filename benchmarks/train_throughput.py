"""Training throughput (images/s) of faceage's real data path next to two baselines measured in the same run.

  (a)  faceage: uint8 cache → DeviceImages (crop + flip on the device) → faceage.train.loop.train_epoch
       (model → mv loss → SGD step, with its bookkeeping);
  (a0) the same loop (train_epoch) on ONE fixed in-memory batch: a0/b is the cost of the loop's own
       bookkeeping, a/a0 that of the data path;
  (b)  compute limit: the same model, loss and SGD step on that fixed batch, without the loop;
  (c)  DataLoader: a standard torchvision JPEG pipeline over the same files (RandomCrop + flip + ToTensor
       + Normalize in `--loader-workers` processes, fp32 batches copied to the device).
Prints a/b, a0/b and a/c; `--compile` adds the same four with torch.compile. Training's settings: bf16
autocast, channels_last, cuDNN autotuning and fused SGD on CUDA, fp32 and freed memory kept in the heap
on the CPU. Warm-up steps are excluded; the variants take turns in timed rounds (the median counts) so load
drift hits all alike; CUDA is synchronised around each block. Before each timed block of (c) the batches its
workers prefetched while the other variants ran (`--loader-workers` × 2) are taken untimed, so (c) starts
from an empty queue rather than with a head start.

    python benchmarks/train_throughput.py --device cpu --img-size 112 --resize 128 --batch-size 32 --steps 8
    python benchmarks/train_throughput.py --device cuda --backbone resnet50 --batch-size 256 --compile

Without `--images DIR` it writes a temporary folder of aligned-like JPEGs at `--resize` px from the UTKFace
chips in ../shared/data/utkface (already aligned faces; FACEAGE_SHARED overrides ../shared) and deletes it
afterwards. Ages are synthetic: labels do not change the cost of a step.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from faceage.core.atomic import write_text_atomic
from faceage.core.console import console
from faceage.model.device import autotune_convolutions, resolve_device, reuse_freed_memory
from faceage.model.inputs import InputNorm
from faceage.model.losses import AgeLoss, make_loss
from faceage.model.network import AgeModel, build_model, input_norm
from faceage.train.batches import DeviceImages
from faceage.train.cache import open_cache
from faceage.train.config import TrainConfig
from faceage.train.distributed import DistContext
from faceage.train.loop import EpochPlan, EpochProgress, Learner, autocast, train_epoch
from faceage.train.optim import make_optimizer

SHARED = Path(os.environ.get("FACEAGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
UTKFACE = SHARED / "data" / "utkface"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
Batches = Iterator[tuple[Tensor, Tensor]]
PREFETCH_FACTOR = 2  # DataLoader batches queued per worker (torch's default, stated here)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="folder of aligned JPEGs (default: UTKFace chips, resized)")
    p.add_argument("--num-images", type=int, default=2048, help="images to use (default 2048)")
    p.add_argument("--backbone", help="timm model (default: resnet50 on CUDA, tf_efficientnet_lite0 on CPU)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=224, help="training crop (default 224)")
    p.add_argument("--resize", type=int, default=256, help="cached image size (default 256)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds; the median counts")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each variant")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--compile", action="store_true", help="also measure the torch.compile variants")
    p.add_argument("--json", type=Path, help="write the figures here as JSON")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: dict[str, Callable[[int], None]], steps: int, warmup: int, rounds: int,
                batch: int, device: torch.device,
                before: dict[str, Callable[[], None]]) -> dict[str, list[float]]:
    """Images/s of each variant in each of `rounds` timed blocks of `steps`, the variants taking turns
    (so a change in machine load hits all of them), after `warmup` untimed steps each; `before[key]` runs
    untimed ahead of each of that variant's blocks."""
    for run in variants.values():
        run(warmup)
    rates: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(rounds):
        for key, run in variants.items():
            if key in before:
                before[key]()
            sync(device)
            start = time.perf_counter()
            run(steps)
            sync(device)
            rates[key].append(steps * batch / (time.perf_counter() - start))
    return rates


def list_images(root: Path, limit: int) -> list[str]:
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and ".faceage-cache" not in p.parts)
    if not paths:
        raise SystemExit(f"no images (*.jpg, *.jpeg, *.png) under {root}")
    return paths[:limit]


def write_aligned_like(dst: Path, count: int, size: int) -> list[str]:
    """`count` UTKFace chips (aligned faces) as `size`-px JPEGs in `dst`, repeating chips if needed."""
    if not UTKFACE.is_dir():
        raise SystemExit(f"no --images given and no UTKFace chips at {UTKFACE}: pass --images DIR")
    chips = sorted(UTKFACE.glob("*.jpg"))
    names = []
    for i in range(count):
        with Image.open(chips[i % len(chips)]) as img:
            face = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        names.append(f"{i:06d}.jpg")
        face.save(dst / names[-1], quality=95)
    return names


class JpegFolder(Dataset[tuple[Tensor, Tensor]]):
    """The usual ImageFolder-style dataset: decode a JPEG per item, then torchvision transforms."""

    def __init__(self, root: Path, paths: list[str], ages: np.ndarray, crop: int, resize: int,
                 norm: InputNorm) -> None:
        self.files = [root / p for p in paths]
        self.ages = torch.from_numpy(ages)
        resize_step = [] if _size(self.files[0]) == resize else [transforms.Resize((resize, resize))]
        self.transform = transforms.Compose([
            *resize_step, transforms.RandomCrop(crop), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(norm.mean, norm.std),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), self.ages[i]


def _size(file: Path) -> int:
    with Image.open(file) as img:
        return img.size[0] if img.size[0] == img.size[1] else -1


def forever(epoch: Callable[[], Batches]) -> Batches:
    """Batches of epoch after epoch."""
    while True:
        yield from epoch()


def drain(batches: Batches, count: int) -> Callable[[], None]:
    """Take `count` batches without training on them (what a DataLoader prefetched meanwhile)."""
    def take() -> None:
        for _ in itertools.islice(batches, count):
            pass
    return take


def plain_steps(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batches: Batches,
                device: torch.device) -> Callable[[int], None]:
    """A bare training step (forward under faceage's autocast, loss, backward, SGD) over `batches`."""
    channels_last = device.type == "cuda"

    def run(n: int) -> None:
        for x, ages in itertools.islice(batches, n):
            x, ages = x.to(device, non_blocking=True), ages.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                outputs = model(x)
            loss = loss_fn(outputs, ages)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def faceage_steps(trainer: nn.Module, model: AgeModel, loss_fn: AgeLoss, optimizer: torch.optim.Optimizer,
                  batches: Batches, device: torch.device) -> Callable[[int], None]:
    """faceage's own epoch loop (faceage.train.loop.train_epoch) over `n` batches of the device data path."""
    ctx = DistContext(0, 1, device)

    def run(n: int) -> None:
        plan = EpochPlan(itertools.islice(batches, n), n, "faceage")
        train_epoch(Learner(trainer, model, loss_fn, optimizer), plan, EpochProgress(), ctx, lambda: False)
    return run


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    autotune_convolutions(device)
    reuse_freed_memory(device)  # as training does
    backbone = args.backbone or ("resnet50" if device.type == "cuda" else "tf_efficientnet_lite0")
    batch, crop = args.batch_size, args.img_size
    with tempfile.TemporaryDirectory(prefix="faceage-bench-") as tmp:
        if args.images:
            root, paths = args.images, list_images(args.images, args.num_images)
        else:
            root, paths = Path(tmp), write_aligned_like(Path(tmp), args.num_images, args.resize)
        if len(paths) < batch:
            raise SystemExit(f"{len(paths)} images are fewer than one batch of {batch}")
        ages = np.random.default_rng(0).integers(16, 78, len(paths)).astype(np.float32)
        started = time.perf_counter()
        cached = open_cache(root, paths, size=args.resize)
        cache_s = time.perf_counter() - started
        norm = input_norm(backbone)
        data = DeviceImages(cached, ages, device, crop=crop, mean=norm.mean, std=norm.std)

        model = build_model(backbone, "mv")[0].to(device).train()
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        loss_fn = make_loss("mv")
        optimizer = make_optimizer(model, TrainConfig(), device)  # the paper's SGD, fused on CUDA
        gen = torch.Generator().manual_seed(0)
        fixed = next(data.batches(np.arange(len(paths)), batch, True, gen))
        jpegs = JpegFolder(root, paths, ages, crop, args.resize, norm)
        loader = DataLoader(jpegs, batch_size=batch, shuffle=True, num_workers=args.loader_workers,
                            pin_memory=device.type == "cuda", drop_last=True,
                            persistent_workers=args.loader_workers > 0,
                            prefetch_factor=PREFETCH_FACTOR if args.loader_workers > 0 else None)
        rows = np.arange(len(paths))
        results: dict[str, dict[str, list[float]]] = {}
        for mode in ("eager", "compiled") if args.compile else ("eager",):
            net = cast(nn.Module, torch.compile(model)) if mode == "compiled" else model
            ours = forever(lambda: data.batches(rows, batch, True, gen, drop_last=True))
            jpeg_batches = forever(lambda: iter(loader))
            variants: dict[str, Callable[[int], None]] = {
                "b": plain_steps(net, loss_fn, optimizer, itertools.repeat(fixed), device),
                "a0": faceage_steps(net, model, loss_fn, optimizer, itertools.repeat(fixed), device),
                "a": faceage_steps(net, model, loss_fn, optimizer, ours, device),
                "c": plain_steps(net, loss_fn, optimizer, jpeg_batches, device),
            }
            prefetched = {"c": drain(jpeg_batches, args.loader_workers * PREFETCH_FACTOR)}
            console.print(f"[dim]{mode}: warm-up, then {args.rounds} rounds of {', '.join(variants)} …[/]",
                          highlight=False)
            results[mode] = interleaved(variants, args.steps, args.warmup, args.rounds, batch, device,
                                        prefetched)
    report(results, backbone, device, args, cache_s, len(paths), data.resident)


def ratios_of(rates: dict[str, float]) -> dict[str, float]:
    """a/b (all of faceage against the compute limit), a0/b (its loop alone), a/c (against a DataLoader)."""
    return {"a/b": rates["a"] / rates["b"], "a0/b": rates["a0"] / rates["b"], "a/c": rates["a"] / rates["c"]}


def report(results: dict[str, dict[str, list[float]]], backbone: str, device: torch.device,
           args: argparse.Namespace, cache_s: float, n_images: int, resident: bool) -> None:
    """The rich table (and the JSON file when asked)."""
    precision = "bf16 autocast, channels_last" if device.type == "cuda" else "fp32"
    title = (f"{backbone}, batch {args.batch_size}, {args.img_size} px crops of {args.resize}, {device} "
             f"({precision}), median of {args.rounds} rounds of {args.steps} steps after {args.warmup}")
    table = Table(title=title)
    columns = ("mode", "(a) faceage img/s", "(a0) loop, fixed batch", "(b) fixed tensor img/s",
               "(c) DataLoader img/s", "a/b", "a0/b", "a/c", "a/b per round")
    for column in columns:
        table.add_column(column, justify="right")
    medians = {mode: {k: statistics.median(v) for k, v in rates.items()} for mode, rates in results.items()}
    ratios = {mode: ratios_of(r) for mode, r in medians.items()}
    for mode, r in medians.items():
        per_round = [a / b for a, b in zip(results[mode]["a"], results[mode]["b"], strict=True)]
        q = ratios[mode]
        table.add_row(mode, f"{r['a']:,.1f}", f"{r['a0']:,.1f}", f"{r['b']:,.1f}", f"{r['c']:,.1f}",
                      f"{q['a/b']:.3f}", f"{q['a0/b']:.3f}", f"{q['a/c']:.2f}",
                      f"{min(per_round):.2f}–{max(per_round):.2f}")
    console.print(table)
    where = "resident on" if resident else "streamed to"
    console.print(f"{n_images} images, uint8 cache {where} {device}, built or opened in {cache_s:.1f} s; "
                  f"DataLoader: {args.loader_workers} workers", highlight=False)
    if args.json:
        payload = {"backbone": backbone, "device": str(device), "batch_size": args.batch_size,
                   "img_size": args.img_size, "resize": args.resize, "steps": args.steps,
                   "rounds": args.rounds, "warmup": args.warmup, "loader_workers": args.loader_workers,
                   "images": n_images, "torch": torch.__version__, "img_per_s": medians, "ratios": ratios,
                   "img_per_s_per_round": results, "resident": resident, "cache_seconds": cache_s}
        write_text_atomic(args.json, json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
