"""Which weights should the bundled model ship: the best validation epoch, the last epoch, or the weight
average (EMA)? All three on the same validation and held-out faces of a finished run.

    python pipelines/bundled/kept_choice.py --run work/bundled/run --labels work/bundled/labels.csv

Needs the run trained with `ema: true` and `--keep-last` (fold0/last.pt holds the last epoch's weights and
the average). Each model predicts the run's own cached faces through training's test path (centre crop,
the run's test-time flip), so the three differ only by their weights. Prints a Markdown table for the card:
per model, the validation MAE, the held-out MAE per source and in all, and in all without the test-time
flip (which doubles the model's cost in predict).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from editions import markdown

from faceage.evaluate.metrics import mae
from faceage.manifest.protocols import split_for_fold
from faceage.manifest.read import read_manifest
from faceage.model.checkpoint import ModelSettings, load_kept_model, load_training_state
from faceage.model.network import build_model, input_norm
from faceage.train.batches import DeviceImages
from faceage.train.cache import open_cache
from faceage.train.loop import predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the bundled model's run folder")
    p.add_argument("--labels", type=Path, required=True, help="labels.csv written by prepare.py")
    args = p.parse_args()
    best = load_kept_model(args.run / "fold0" / "best.pt")
    last = load_training_state(args.run / "fold0" / "last.pt")
    if "ema" not in last:
        raise SystemExit(f"{args.run}/fold0/last.pt holds no weight average: train with ema: true")
    config = last["config"]
    manifest = read_manifest(Path(config["manifest"]), Path(config["images"]), config["protocol"])
    split = split_for_fold(manifest, 0)
    images = open_cache(Path(config["images"]), manifest["path"].tolist(), size=config["resize"])
    norm = input_norm(config["backbone"])
    data = DeviceImages(images, manifest["age"].to_numpy(np.float32), torch.device("cpu"),
                        crop=config["img_size"], mean=norm.mean, std=norm.std)
    settings = ModelSettings.of(best, args.run / "fold0" / "best.pt")
    model, _ = build_model(settings.backbone, settings.loss, pretrained=None)  # the weights come next
    labels = pd.read_csv(args.labels, keep_default_na=False)
    labels["aligned"] = labels["path"].str.rsplit(".", n=1).str[0] + ".jpg"
    source = manifest["path"].map(dict(zip(labels["aligned"], labels["source"], strict=True)))
    ages = manifest["age"].to_numpy(np.float64)
    test_sources = source.to_numpy()[split.test]

    print(f"{args.run}: best = epoch {best['epoch']}, last = epoch {last['epochs_done']}, average = the "
          f"weight average after it; MAE on {len(split.val)} validation and {len(split.test)} held out\n")
    table: list[list[str]] = []
    for name, weights in (("best", best["model"]), ("last", last["model"]), ("average (EMA)", last["ema"])):
        model.load_state_dict(weights)
        scores = []
        flip = config["tta_flip"]
        for rows, flipped in ((split.val, flip), (split.test, flip), (split.test, False)):
            batches = data.batches(rows, 64, train=False, generator=torch.Generator())
            scores.append(predict(model, batches, torch.device("cpu"), flip=flipped)["pred"])
        per_source = [mae(scores[1][test_sources == s], ages[split.test][test_sources == s])
                      for s in sorted(set(test_sources))]
        table.append([name, f"{mae(scores[0], ages[split.val]):.3f}", *(f"{v:.3f}" for v in per_source),
                     f"{mae(scores[1], ages[split.test]):.3f}", f"{mae(scores[2], ages[split.test]):.3f}"])
    print(markdown(["model", "validation", *sorted(set(test_sources)), "held out, all", "all, without flip"],
                   table))


if __name__ == "__main__":
    main()
