"""Throughput of `faceage align` end to end, next to the detector's inference alone, measured in one run.

    .venv/bin/python benchmarks/align_throughput.py [--images N] [--rounds R] [--data DIR] [--detector NAME]

Baseline: the same detector (one onnxruntime thread) on the same images, already decoded in memory: the
limit alignment cannot beat. End to end: `align_folder` on a fresh temporary DST (walk, decode, detect,
warp, encode, atomic writes, faces.csv), with 1 and then 2 worker processes (startup included).
Goal: end to end ≥ 0.7 of detector-only with one worker, near-linear scaling with workers.

On a shared machine wall-clock rates move with the load: the three measurements are interleaved over a few
rounds and the best of each is kept, and the one-worker comparison is also printed in CPU time of this
process (both runs are in-process then), which the neighbours' load barely changes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from faceage.align.detect import make_detector
from faceage.align.run import align_folder
from faceage.align.settings import AlignSettings
from faceage.core.console import console
from faceage.core.imageio import load_rgb

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "morph_subset" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=240, help="how many images (spread over the folder)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all three measurements; best kept")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FACEAGE_DATA", DEFAULT_DATA)))
    parser.add_argument("--detector", default="retinaface")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.data.iterdir() if p.is_file())
    files = files[:: max(1, len(files) // args.images)][: args.images]
    settings = AlignSettings(detector=args.detector, model=args.model)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="faceage-bench-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for file in files:
            os.symlink(file, src / file.name)
        images = [load_rgb(f) for f in files]
        detector = make_detector(args.detector, args.model, 1, score_threshold=settings.score_threshold)
        detector.detect(images[0])  # warm-up
        for round_ in range(args.rounds):  # interleaved, so a burst of load elsewhere hits every figure alike
            start, cpu = time.perf_counter(), time.process_time()
            for image in images:
                detector.detect(image)
            _keep(best, "detect", len(images), start, cpu)
            for workers in (1, 2):
                start, cpu = time.perf_counter(), time.process_time()
                out = Path(tmp) / f"r{round_}w{workers}"
                summary = align_folder(src, out, settings, workers=workers, progress=False)
                _keep(best, f"align{workers}", summary.processed, start, cpu)

    console.print(f"{len(files)} images from {args.data}, detector {args.detector}, {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.1f}; best of {args.rounds} rounds (startup included)")
    console.print(f"detector only (decoded, 1 thread): {best['detect']:8.1f} faces/s")
    console.print(f"faceage align, 1 worker          : {best['align1']:8.1f} faces/s  "
                  f"ratio to detector only {best['align1'] / best['detect']:.2f} (goal ≥ 0.70)")
    console.print(f"  in CPU time of this process    : {best['align1 cpu']:8.1f} vs {best['detect cpu']:.1f} "
                  f"faces/s, ratio {best['align1 cpu'] / best['detect cpu']:.2f}")
    console.print(f"faceage align, 2 workers         : {best['align2']:8.1f} faces/s  "
                  f"scaling 1→2 workers ×{best['align2'] / best['align1']:.2f} (linear: ×2)")


def _keep(best: dict[str, float], name: str, count: int, start: float, cpu: float) -> None:
    """Record the wall-clock and CPU-time rates of one measurement, keeping the best of the rounds."""
    rates = {name: count / (time.perf_counter() - start), f"{name} cpu": count / (time.process_time() - cpu)}
    for key, rate in rates.items():
        best[key] = max(best.get(key, 0.0), rate)


if __name__ == "__main__":
    main()
