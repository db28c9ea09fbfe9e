"""Why predict resizes align's crop instead of warping each face straight to the side its model reads: the
held-out faces both ways, side by side, per source and per true-age band.

    python pipelines/bundled/warp_check.py --data ../shared/data [--model FILE.onnx] [--min-age 60]

Training's cache resized align's 256-px crops to the run's `resize` (Lanczos); predict does the same. The
alternative measured here warps each face straight to `resize` with the same framing (pixel centres where
the resize would put them), which saves 1.1–1.7 ms of preprocessing a face but resamples the face
differently: on the second edition's held-out faces it read the old a year younger (`--min-age 60`,
resized against direct, the two-network file: 60–79 MAE 8.11 against 8.48, 80+ 9.98 against 10.67),
mostly UTKFace's 200-px chips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from editions import BANDS
from rich.table import Table
from splits import split_rows

from faceage.align.detect import make_detector
from faceage.align.faces import find_faces
from faceage.align.geometry import fit_similarity, template, warp
from faceage.core.console import console
from faceage.core.imageio import load_rgb
from faceage.evaluate.metrics import calibrate, epsilon_error, mae
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.options import PredictOptions, alignment_for

HERE = Path(__file__).resolve().parent
WAYS = ("resized", "direct")


def direct_warp(image: np.ndarray, kps: np.ndarray, size: int, side: int) -> np.ndarray:
    """The face warped straight to `side` px, framed as align's `size` crop resized to `side` would be."""
    ratio = side / size  # a resize maps pixel p to (p + 0.5) · ratio − 0.5
    to_side = np.array([[ratio, 0, 0.5 * ratio - 0.5], [0, ratio, 0.5 * ratio - 0.5], [0, 0, 1]])
    return warp(image, to_side @ fit_similarity(kps, template(size)), side)


def both_ways(model: str | None, held: pd.DataFrame) -> pd.DataFrame:
    """One row per held-out image with a usable face: the first face's mean, std and pred, both ways."""
    estimator = load_estimator(model, device="cpu")
    settings = alignment_for(estimator.info, PredictOptions())
    detector = make_detector(settings.detector, settings.model, 2, "cpu", settings.score_threshold)
    rows = []
    for row in held.itertuples():
        image = load_rgb(row.file)
        found = find_faces(detector, image, settings).faces  # align's crop, as predict reads it
        if not found or found[0].crop is None:
            continue
        direct = direct_warp(image, found[0].face.kps, settings.size, estimator.info.resize)
        ages = estimator.estimate(preprocess([found[0].crop, direct], estimator.info))
        rows.append({"source": row.source, "age": row.age, "age_std": row.age_std,
                     **{f"{k}_{way}": float(getattr(ages, k)[i])
                        for i, way in enumerate(WAYS) for k in ("pred", "mean", "std")}})
    return pd.DataFrame(rows)


def groups(scores: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Each source, every face, then each true-age band with faces."""
    age = scores["age"]
    bands = [(f"age {label}", scores[(age >= lo) & (age < hi)]) for label, lo, hi in BANDS]
    return [*((str(s), part) for s, part in scores.groupby("source")), ("all", scores),
            *((label, part) for label, part in bands if len(part))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    p.add_argument("--sources", nargs="*", default=None, help="sources to check (default: all)")
    p.add_argument("--min-age", type=float, default=0.0, help="only held-out faces this old or older")
    args = p.parse_args()
    rows = split_rows(args.data)
    held = rows[(rows["split"] == "test") & (rows["source"].isin(args.sources or rows["source"].unique()))
                & (rows["age"] >= args.min_age)]
    scores = both_ways(args.model, held)
    table = Table(title="held-out faces: align's crop resized (as training and predict do) or warped to the "
                        "model's side")
    for name in ("faces", "group", "way", "MAE", "bias", "ε-error", "within 1 / 2 std", "|Δ mean|"):
        table.add_column(name, justify="left" if name in ("group", "way") else "right")
    for group, part in groups(scores):
        delta = np.abs(part["mean_direct"] - part["mean_resized"]).mean()
        for way in WAYS:
            shares = calibrate(part[f"mean_{way}"], part["age"], part[f"std_{way}"], "mean")
            crowd = part["age_std"].notna().all()
            eps = epsilon_error(part[f"pred_{way}"], part["age"], part["age_std"]).value if crowd else None
            table.add_row(str(len(part)), group, way, f"{mae(part[f'pred_{way}'], part['age']):.3f}",
                          f"{(part[f'pred_{way}'] - part['age']).mean():+.2f}",
                          "" if eps is None else f"{eps:.3f}",
                          f"{100 * shares.within_1std:.1f} / {100 * shares.within_2std:.1f} %",
                          f"{delta:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
