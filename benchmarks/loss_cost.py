"""What the mean-variance terms cost: one training step (forward + backward) with the mv loss next to the
same step with softmax cross-entropy alone, measured in the same run, interleaved so drift hits both.

    python benchmarks/loss_cost.py --backbone tf_efficientnet_lite0 --batch 32 --size 112 --device cpu

Prints ms per batch for each loss, their ratio, and the loss computation alone (no backbone).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from faceage.core.console import console
from faceage.model.losses import AGE_CLASSES, make_loss
from faceage.model.network import build_model


def say(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of `fn`, the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def compare_losses(backbone: str, batch: int, size: int, device: torch.device, rounds: int,
                   steps: int, autocast: bool) -> dict[str, list[float]]:
    """Per-step seconds of forward + loss + backward for "mv" and "softmax", `rounds` alternating blocks."""
    model = build_model(backbone, "mv")[0].to(device).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    ages = torch.randint(16, 78, (batch,), generator=gen).float().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    losses = {name: make_loss(name) for name in ("mv", "softmax")}

    def step(name: str) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = losses[name](model(x), ages)
        out["loss"].backward()
        model.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in losses}
    for name in losses:  # warm-up
        step(name)
    for r in range(rounds):
        for name in (("mv", "softmax") if r % 2 == 0 else ("softmax", "mv")):  # neither always goes first
            times[name] += [time_call(functools.partial(step, name), device) for _ in range(steps)]
    return times


def loss_only(batch: int, device: torch.device, repeats: int = 200) -> dict[str, float]:
    """Median seconds of the loss alone (forward + backward on the logits), per loss."""
    logits = torch.randn(batch, AGE_CLASSES, device=device, requires_grad=True)
    ages = torch.randint(16, 78, (batch,), device=device).float()
    result = {}
    for name in ("mv", "softmax"):
        loss = make_loss(name)

        def call(loss: torch.nn.Module = loss) -> None:
            loss(logits, ages)["loss"].backward()

        result[name] = statistics.median(time_call(call, device) for _ in range(repeats))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per loss")
    parser.add_argument("--steps", type=int, default=4, help="steps per block")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast = args.bf16 or device.type == "cuda"
    times = compare_losses(args.backbone, args.batch, args.size, device, args.rounds, args.steps, autocast)
    med = {name: statistics.median(t) for name, t in times.items()}
    say(f"{args.backbone}, batch {args.batch} at {args.size} px on {device} "
        f"({'bf16 autocast' if autocast else 'fp32'}, {torch.get_num_threads()} CPU threads), "
        f"forward + backward, median of {len(times['mv'])} steps each:")
    for name, seconds in med.items():
        q1, _, q3 = statistics.quantiles(times[name], n=4)
        say(f"  {name:8s} {seconds * 1e3:9.1f} ms/batch  {args.batch / seconds:8.1f} img/s  "
            f"(quartiles {q1 * 1e3:.1f}–{q3 * 1e3:.1f} ms)")
    say(f"  mv / softmax step time: {med['mv'] / med['softmax']:.3f}")
    alone = loss_only(args.batch, device)
    say(f"  the loss alone (fwd + bwd on the logits): mv {alone['mv'] * 1e6:.0f} µs, "
        f"softmax {alone['softmax'] * 1e6:.0f} µs "
        f"({(alone['mv'] - alone['softmax']) / med['softmax'] * 100:.2f} % of a softmax step)")


if __name__ == "__main__":
    main()
