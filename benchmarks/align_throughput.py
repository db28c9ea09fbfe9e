"""Throughput of `faceage align` end to end, next to the detector's inference alone, measured in one run.

    .venv/bin/python benchmarks/align_throughput.py [--images N] [--data DIR] [--detector NAME] [--model PATH]

Baseline: the same detector (one onnxruntime thread) on the same images, already decoded in memory: the
limit alignment cannot beat. End to end: `align_folder` on a fresh temporary DST (walk, decode, detect,
warp, encode, atomic writes, faces.csv), with 1 and then 2 worker processes (startup included).
Goal: end to end ≥ 0.7 of detector-only with one worker, near-linear scaling with workers.

On a shared machine wall-clock rates move with the load, so the one-worker comparison is also printed in
CPU time of this process (both runs are in-process then), which the neighbours' load does not change.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from faceage.align_one import AlignSettings
from faceage.align_run import align_folder
from faceage.console import console
from faceage.detect import make_detector
from faceage.imageio import load_rgb

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "morph_subset" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=240, help="how many images (spread over the folder)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FACEAGE_DATA", DEFAULT_DATA)))
    parser.add_argument("--detector", default="retinaface")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.data.iterdir() if p.is_file())
    files = files[:: max(1, len(files) // args.images)][: args.images]
    settings = AlignSettings(detector=args.detector, model=args.model)
    with tempfile.TemporaryDirectory(prefix="faceage-bench-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for file in files:
            os.symlink(file, src / file.name)

        images = [load_rgb(f) for f in files]
        threshold = settings.score_threshold
        detector = make_detector(args.detector, args.model, threads=1, score_threshold=threshold)
        detector.detect(images[0])  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for image in images:
            detector.detect(image)
        detect_rate = len(images) / (time.perf_counter() - start)
        detect_cpu = len(images) / (time.process_time() - cpu)

        rates, cpu_rate = {}, 0.0
        for workers in (1, 2):
            start, cpu = time.perf_counter(), time.process_time()
            summary = align_folder(src, Path(tmp) / f"d{workers}", settings, workers=workers, progress=False)
            rates[workers] = summary.processed / (time.perf_counter() - start)
            cpu_rate = cpu_rate or summary.processed / (time.process_time() - cpu)

    console.print(f"{len(files)} images from {args.data}, detector {args.detector}, {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.1f}")
    console.print(f"detector only (decoded, 1 thread): {detect_rate:8.1f} faces/s")
    console.print(f"faceage align, 1 worker          : {rates[1]:8.1f} faces/s  "
                  f"ratio to detector only {rates[1] / detect_rate:.2f} (goal ≥ 0.70)")
    console.print(f"  in CPU time of one core        : {cpu_rate:8.1f} vs {detect_cpu:.1f} faces/s, "
                  f"ratio {cpu_rate / detect_cpu:.2f}")
    console.print(f"faceage align, 2 workers         : {rates[2]:8.1f} faces/s  "
                  f"scaling 1→2 workers ×{rates[2] / rates[1]:.2f} (linear: ×2)")



if __name__ == "__main__":
    main()
