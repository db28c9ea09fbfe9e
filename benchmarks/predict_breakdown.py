"""Where a face's time goes in `faceage predict` with the bundled model, stage by stage, in one run:
decode, detection (with its padded retry where a photo needs it), the warp to align's crop, the
preprocessing (Lanczos resize to the model's side, which predict's detection workers do, centre crop,
normalisation) and the model, each
timed alone over the same photos on all `--threads` cores, then `predict_images` end to end as `faceage
predict` runs it (the cores split between the detector and the model, which run at once). The baseline is
the detector alone on all the cores: predict's faces/s over the detector's is the ratio the "first five
minutes" issue targets (≥ 0.6), the detector run at its fastest (`predict_throughput.detector_alone`).

    python benchmarks/predict_breakdown.py --num-images 200 --threads 2
    python benchmarks/predict_breakdown.py --model candidate.onnx   # another exported model in its place
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from predict_throughput import detector_alone
from rich.table import Table

from faceage.align.detect import make_detector
from faceage.align.geometry import align_face, choose, locate
from faceage.core.console import console
from faceage.core.imageio import load_rgb
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.options import PredictOptions, alignment_for, share_cores
from faceage.predict.photos import predict_images

MORPH = Path(__file__).resolve().parents[2] / "shared" / "data" / "morph_subset" / "images"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=MORPH, help="folder of photos (default: MORPH subset)")
    p.add_argument("--num-images", type=int, default=200, help="photos, sorted by name (default 200)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per model call (default 32)")
    p.add_argument("--model", type=Path, help="an exported .onnx to time instead of the bundled model")
    args = p.parse_args()
    photos = sorted(f for f in args.images.iterdir() if f.is_file())[: args.num_images]
    estimator = load_estimator(args.model, device="cpu", threads=args.threads)
    options = PredictOptions(threads=args.threads, device="cpu", batch_size=args.batch_size)
    settings = alignment_for(estimator.info, options)
    detector = make_detector(settings.detector, settings.model, args.threads, "cpu", settings.score_threshold)
    as_predict = load_estimator(args.model, device="cpu", threads=share_cores(args.threads).model_threads)
    predict_images(as_predict, photos[:4], options, progress=False)  # warm-up: sessions, caches

    seconds: dict[str, float] = {}

    def timed(name: str, work):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        value = work()
        seconds[name] = time.perf_counter() - start
        return value

    images = timed("decode", lambda: [load_rgb(f) for f in photos])
    located = timed("detect (+ padded retry)", lambda: [locate(detector, image) for image in images])
    found = [(image, choose(loc.faces, "largest")) for image, loc in zip(images, located, strict=True)
             if loc.faces]
    crops = timed("warp", lambda: [align_face(image, face.kps, settings.size)[0] for image, face in found])
    x = timed("preprocess", lambda: preprocess(crops, estimator.info))
    flip = "flip inside" if estimator.info.flip else "no flip"
    name = args.model.name if args.model else "bundled"
    timed(f"model ({name}, {flip})", lambda: [estimator.estimate(x[i:i + args.batch_size])
                                              for i in range(0, len(x), args.batch_size)])
    faces = len(crops)
    timings = detector_alone(images, args.threads, "cpu", detect=lambda d, image: locate(d, image).faces)
    alone = min(timings, key=lambda t: t.seconds)
    detector_rate = faces / alone.seconds
    start = time.perf_counter()
    result = predict_images(as_predict, photos, options, progress=False)
    end_to_end = time.perf_counter() - start
    share = share_cores(args.threads)
    table = Table(title=f"where a face's time goes: {len(photos)} photos, {faces} faces, {args.threads} "
                        f"cores (end to end: {share.detect_workers} detection workers + "
                        f"{share.model_threads} model threads), batch {args.batch_size}")
    for name in ("stage", "seconds", "ms per face", "share of the stages"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    total = sum(seconds.values())
    for name, value in seconds.items():
        table.add_row(name, f"{value:.2f}", f"{1000 * value / faces:.1f}", f"{100 * value / total:.0f} %")
    table.add_row("predict_images end to end", f"{end_to_end:.2f}", f"{1000 * end_to_end / faces:.1f}", "",
                  style="bold")
    console.print(table)
    rate = int((result.table["status"] == "ok").sum()) / end_to_end
    others = "; ".join(f"{t.how}: {faces / t.seconds:.1f}" for t in timings if t is not alone)
    console.print(f"predict {rate:.1f} faces/s; the detector alone at its fastest ({alone.how}) "
                  f"{detector_rate:.1f} faces/s: {rate / detector_rate:.2f}× (target ≥ 0.6)"
                  + (f"; the detector alone, {others} faces/s" if others else ""))


if __name__ == "__main__":
    main()
