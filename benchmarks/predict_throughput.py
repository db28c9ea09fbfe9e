"""Throughput (faces/s) of `faceage predict` with torch and with ONNX, next to the detector alone, in one run.

  (a) detector alone: `detector_alone` on the photos already decoded, the faster of one session on every
      core and a one-thread session per core on its own photo (the ceiling of predict);
  (b) predict, torch: `predict_images` end to end (decode, detect, align, preprocess, model, rows);
  (c) predict, ONNX: the same with the model exported by `faceage export`'s writer, in onnxruntime;
  (d) predict, bundled model: the same with faceage/zoo's model (what `faceage predict` uses by default).
Prints b/a, c/a and d/a. Each timed pass follows a warm-up pass over a few photos.

    python benchmarks/predict_throughput.py --num-images 200 --backbone resnet18
    python benchmarks/predict_throughput.py --run runs/morph2-se-vgg16_bn-mv --num-images 500 --device cuda

Without `--run` the model is `--backbone` with random weights (rebuilt exactly as predict rebuilds a trained
one): the cost of a forward pass does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from faceage.align.detect import Detector, make_detector
from faceage.align.settings import AlignSettings
from faceage.core.atomic import write_text_atomic
from faceage.core.console import console
from faceage.core.imageio import load_rgb
from faceage.model.network import build_model
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.export import write_onnx
from faceage.predict.info import Estimator, ModelInfo
from faceage.predict.onnx_model import load_onnx
from faceage.predict.options import PredictOptions, share_cores
from faceage.predict.photos import predict_images
from faceage.predict.torch_model import FoldEnsemble, TorchEstimator, load_ensemble

MORPH = Path(__file__).resolve().parents[2] / "shared" / "data" / "morph_subset" / "images"



@dataclass(frozen=True)
class DetectorTiming:
    """Detector-only time on already-decoded images (the ceiling of predict and align), and how the cores
    were spent."""

    images: int
    faces: int
    seconds: float
    how: str


def detector_alone(images: list[np.ndarray], threads: int, device: str = "cpu", warmup: int = 3,
                   detect: Callable[[Detector, np.ndarray], list] = lambda d, image: d.detect(image)
                   ) -> list[DetectorTiming]:
    """The detector alone on decoded images, the two ways to spend `threads` cores: one session with every
    core inside each photo, and one one-thread session called on its own photo from each of `threads`
    workers (predict's way); the faster is predict's ceiling. Each after a few warm-up calls (sessions,
    prior caches)."""
    timings = []
    for session_threads, workers in sorted({(threads, 1), (1, threads)}):
        detector = make_detector("retinaface", threads=session_threads, device=device)
        for image in images[:warmup]:
            detect(detector, image)
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            found = pool.map(detect, [detector] * len(images), images)
            faces = sum(len(faces_in_image) for faces_in_image in found)
        timings.append(DetectorTiming(len(images), faces, time.perf_counter() - start,
                                      f"{session_threads} thread(s) × {workers} worker(s)"))
    return timings


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=MORPH, help="folder of photos (default: MORPH subset)")
    p.add_argument("--num-images", type=int, default=200, help="photos to use, sorted by name (default 200)")
    p.add_argument("--run", type=Path, help="a trained run folder (default: --backbone, random weights)")
    p.add_argument("--backbone", default="resnet18", help="timm model when no --run (default resnet18)")
    p.add_argument("--img-size", type=int, default=224, help="crop side when no --run (default 224)")
    p.add_argument("--resize", type=int, default=256, help="resize side when no --run (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per model call (default 32)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="onnxruntime threads of the detector and the ONNX model (default: all cores)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--warmup", type=int, default=4, help="photos in each warm-up pass (default 4)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    return p.parse_args()


def model(args: argparse.Namespace) -> tuple[FoldEnsemble, ModelInfo]:
    if args.run is not None:
        return load_ensemble(args.run)
    torch.manual_seed(0)
    net, _ = build_model(args.backbone, "mv", pretrained=None)
    info = ModelInfo(f"{args.backbone} (random weights)", args.backbone, "mv", args.img_size, args.resize,
                     (0,), None)
    return FoldEnsemble([net]).eval(), info


def timed_predict(estimator: Estimator, photos: list[Path], options: PredictOptions, warmup: int) -> dict:
    predict_images(estimator, photos[:warmup], options, progress=False)
    start = time.perf_counter()
    table = predict_images(estimator, photos, options, progress=False).table
    seconds = time.perf_counter() - start
    faces = int((table["status"] == "ok").sum())
    return {"images": len(photos), "faces": faces, "seconds": seconds, "faces_per_s": faces / seconds}


def main() -> None:
    args = parse_args()
    photos = sorted(p for p in args.images.iterdir() if p.is_file())[: args.num_images]
    if not photos:
        raise SystemExit(f"no photos in {args.images}")
    ensemble, info = model(args)
    options = PredictOptions(detector="retinaface", size=AlignSettings().size, threads=args.threads,
                             device=args.device, batch_size=args.batch_size)
    model_threads = share_cores(args.threads).model_threads  # predict shares the cores as `faceage predict`
    decoded = [load_rgb(p) for p in photos]
    timings = detector_alone(decoded, args.threads, args.device, warmup=args.warmup)
    results = {f"detector alone, {t.how}": {"images": t.images, "faces": t.faces, "seconds": t.seconds,
                                             "faces_per_s": t.faces / t.seconds} for t in timings}
    alone = min(timings, key=lambda t: t.seconds)
    torch_estimator = TorchEstimator(ensemble, info, args.device)
    results["predict, torch"] = timed_predict(torch_estimator, photos, options, args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        example = preprocess([np.zeros((info.resize, info.resize, 3), np.uint8)] * 2, info)
        write_onnx(ensemble.cpu(), info, example, onnx_file, 18)
        results["predict, ONNX"] = timed_predict(load_onnx(onnx_file, args.device, threads=model_threads),
                                                 photos, options, args.warmup)
    bundled = load_estimator(None, device=args.device, threads=model_threads)
    as_recorded = replace(options, detector=None, size=None)  # aligned as the bundled model records
    results["predict, bundled model"] = timed_predict(bundled, photos, as_recorded, args.warmup)
    baseline = alone.faces / alone.seconds
    table = Table(title=f"predict throughput: {info.source}, {info.img_size} px, {len(photos)} photos from "
                        f"{args.images}, device {args.device}, torch threads {torch.get_num_threads()}, "
                        f"onnxruntime threads {args.threads}")
    for name in ("", "images", "faces", "seconds", "faces/s", "vs the faster detector alone"):
        table.add_column(name, justify="left" if not name else "right")
    for name, r in results.items():
        table.add_row(name, str(r["images"]), str(r["faces"]), f"{r['seconds']:.2f}",
                      f"{r['faces_per_s']:.1f}", f"{r['faces_per_s'] / baseline:.2f}×")
    console.print(table)
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
