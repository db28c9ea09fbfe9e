"""Does predict's direct warp change the bundled model's ages? The held-out faces both ways, side by side.

    python pipelines/bundled/warp_check.py --data ../shared/data [--model FILE.onnx]

predict warps each face straight to the side the model reads (`find_faces(..., sample=resize)`) instead of
to align's 256 px and then resizing the crop, as training's cache did. The two crops differ by resampling
only (same framing). This script detects every held-out face of every source once, aligns it both ways,
runs the model on both, and prints per source the MAE, the ChaLearn ε-error and the shares within 1 and 2
predicted stds of each, with the mean absolute difference between the two ages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table
from splits import split_rows

from faceage.align.detect import make_detector
from faceage.align.faces import find_faces
from faceage.align.geometry import align_face
from faceage.core.console import console
from faceage.core.imageio import load_rgb
from faceage.evaluate.metrics import calibrate, epsilon_error, mae
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.options import PredictOptions, alignment_for

HERE = Path(__file__).resolve().parent


def both_ways(model: str | None, held: pd.DataFrame) -> pd.DataFrame:
    """One row per held-out image with a usable face: the first face's mean, std and pred, both ways."""
    estimator = load_estimator(model, device="cpu")
    settings = alignment_for(estimator.info, PredictOptions())
    detector = make_detector(settings.detector, settings.model, 2, "cpu", settings.score_threshold)
    rows = []
    for row in held.itertuples():
        image = load_rgb(row.file)
        found = find_faces(detector, image, settings).faces  # aligned at settings.size: the resized way
        if not found or found[0].crop is None:
            continue
        direct, _ = align_face(image, found[0].face.kps, settings.size, estimator.info.resize)
        ages = estimator.estimate(preprocess([found[0].crop, direct], estimator.info))
        rows.append({"source": row.source, "age": row.age, "age_std": row.age_std,
                     **{f"{k}_{way}": float(getattr(ages, k)[i])
                        for i, way in enumerate(("resized", "direct")) for k in ("pred", "mean", "std")}})
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    p.add_argument("--sources", nargs="*", default=None, help="sources to check (default: all)")
    args = p.parse_args()
    rows = split_rows(args.data)
    held = rows[(rows["split"] == "test") & (rows["source"].isin(args.sources or rows["source"].unique()))]
    scores = both_ways(args.model, held)
    table = Table(title="held-out faces: the crop resized (as trained) or warped to the model's side")
    for name in ("source", "faces", "way", "MAE", "ε-error", "within 1 / 2 std", "|Δ mean|"):
        table.add_column(name, justify="left" if name in ("source", "way") else "right")
    for source, part in [*scores.groupby("source"), ("all", scores)]:
        delta = np.abs(part["mean_direct"] - part["mean_resized"]).mean()
        for way in ("resized", "direct"):
            shares = calibrate(part[f"mean_{way}"], part["age"], part[f"std_{way}"], "mean")
            crowd = part["age_std"].notna().all()
            eps = epsilon_error(part[f"pred_{way}"], part["age"], part["age_std"]).value if crowd else None
            table.add_row(str(source), str(len(part)), way, f"{mae(part[f'pred_{way}'], part['age']):.3f}",
                          "" if eps is None else f"{eps:.3f}",
                          f"{100 * shares.within_1std:.1f} / {100 * shares.within_2std:.1f} %",
                          f"{delta:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
