"""The held-out tables of any bundled-model run, from its own predictions (training's test path).

    python pipelines/bundled/card.py --run work/bundled/run --labels work/bundled/labels.csv

prints Markdown tables: counts per source and split; held-out MAE, CS@5, calibration shares and ChaLearn
ε-error per source; MAE, bias and shares per true-age band (editions.py's); the shares before calibration
(and the temperature where the run logged one). Every figure is on the held-out faces (`split` = test),
which training never saw. editions.py gives the same tables for model files through predict's path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from editions import BANDS, markdown as table, source_rows

from faceage.evaluate.metrics import per_group
from faceage.model.checkpoint import load_kept_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="The bundled model's run folder.")
    parser.add_argument("--labels", type=Path, required=True, help="labels.csv written by prepare.py.")
    args = parser.parse_args()
    labels = pd.read_csv(args.labels, keep_default_na=False)
    predictions = pd.read_csv(args.run / "predictions.csv")
    labels["aligned"] = labels["path"].str.rsplit(".", n=1).str[0] + ".jpg"
    source = dict(zip(labels["aligned"], labels["source"], strict=True))
    predictions["source"] = predictions["path"].map(source)
    if predictions["source"].isna().any():
        raise SystemExit(f"{args.run}/predictions.csv has rows that {args.labels} does not list; pass the "
                         f"labels.csv the run's manifest was built from.")

    counts = pd.crosstab(labels["source"], labels["split"])
    print("### Data (images per source and split; test = held out)\n")
    print(table(["source", "train", "valid", "held out"],
                [[s, *(str(counts.loc[s, c]) for c in ("train", "valid", "test"))] for s in counts.index]))

    rows = [source_rows(str(name), part, len(part))
            for name, part in [*predictions.groupby("source"), ("all", predictions)]]
    print("\n### Held-out faces\n")
    print(table(["source", "faces", "MAE", "CS@5", "within 1 / 2 std", "ε-error"], rows))

    print("\n### Held-out MAE, bias (mean of pred − age) and coverage per true-age band, all sources\n")
    groups = per_group(predictions["pred"], predictions["age"], (predictions["mean"], predictions["std"]),
                       BANDS)
    print(table(["age", "faces", "MAE", "bias", "within 1 std", "within 2 std"],
                [[g.label, str(g.n), f"{g.mae:.2f}", f"{g.bias:+.2f}", f"{100 * (g.within_1std or 0):.1f} %",
                  f"{100 * (g.within_2std or 0):.1f} %"] for g in groups if g.n]))

    best = load_kept_model(args.run / "fold0" / "best.pt")
    info = best.get("calibration")
    if info is not None:
        test = info["test"]
        print(f"\n### Calibration\n\nstd × {info['std_scale']:.3f}, fitted on {info['val_rows']} validation "
              f"faces (epoch {best['epoch']} kept).\n")
        print(table(["held-out faces", "MAE", "within 1 std", "within 2 std"],
                    [[name, f"{s['mae']:.3f}", f"{100 * s['within_1std']:.1f} %",
                      f"{100 * s['within_2std']:.1f} %"]
                     for name, s in (("uncalibrated", test["uncalibrated"]),
                                     (f"std × {info['std_scale']:.3f} (shipped)", test["std_scale"]),
                                     *([(f"temperature {info['temperature']:.3f} (not used)",
                                         test["temperature"])] if "temperature" in info else []))]))

if __name__ == "__main__":
    main()
