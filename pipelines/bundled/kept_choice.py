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

import pandas as pd
from editions import markdown
from run_faces import RunFaces

from faceage.evaluate.metrics import mae


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the bundled model's run folder")
    p.add_argument("--labels", type=Path, required=True, help="labels.csv written by prepare.py")
    args = p.parse_args()
    run = RunFaces.open(args.run)
    if "ema" not in run.last:
        raise SystemExit(f"{args.run}/fold0/last.pt holds no weight average: train with ema: true")
    split, ages = run.split, run.manifest["age"].to_numpy(float)
    labels = pd.read_csv(args.labels, keep_default_na=False)
    labels["aligned"] = labels["path"].str.rsplit(".", n=1).str[0] + ".jpg"
    source = run.manifest["path"].map(dict(zip(labels["aligned"], labels["source"], strict=True)))
    test_sources = source.to_numpy()[split.test]
    print(f"{args.run}: best = epoch {run.best['epoch']}, last = epoch {run.last['epochs_done']}, "
          f"average = the weight average after it; MAE on {len(split.val)} validation and "
          f"{len(split.test)} held-out faces\n")
    table: list[list[str]] = []
    for name, weights in (("best", run.best["model"]), ("last", run.last["model"]),
                          ("average (EMA)", run.last["ema"])):
        model = run.model(weights)
        val, test = (run.predictions(model, rows)["pred"] for rows in (split.val, split.test))
        plain = run.predictions(model, split.test, flip=False)["pred"]
        per_source = [mae(test[test_sources == s], ages[split.test][test_sources == s])
                      for s in sorted(set(test_sources))]
        table.append([name, f"{mae(val, ages[split.val]):.3f}", *(f"{v:.3f}" for v in per_source),
                      f"{mae(test, ages[split.test]):.3f}", f"{mae(plain, ages[split.test]):.3f}"])
    print(markdown(["model", "validation", *sorted(set(test_sources)), "held out, all", "all, without flip"],
                   table))


if __name__ == "__main__":
    main()
