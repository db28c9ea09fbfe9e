"""Lay out the bundled model's training data: one folder of raw images and one label table for all sources.

    python pipelines/bundled/prepare.py --data ../shared/data --out work/bundled

writes `OUT/raw/<source>/` (links to the read-only sources, for `faceage align`) and
`OUT/labels.csv` (path, age, age_std, subject, split, source) for `faceage manifest --dataset csv
--protocol official`. Each source keeps a held-out part the model never sees (`split` = test, about 15 %;
whole subjects for MORPH, images for UTKFace and ChaLearn, which have no subject ids) and a validation part
(`valid`, about 10 % of the rest) that picks the best epoch and fits the calibration. Seeded: the same data
give the same table. Each source draws its split from its own seed (SEED + 10 × its place in SOURCES), so a
source added later leaves the earlier sources' splits, and so the first edition's held-out faces, unchanged.
See pipelines/bundled/README.md for the whole build.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

HELD_OUT = 0.15
VALID = 0.10
SEED = 20261202

# source name → (folder under --data, image folder inside it, label file inside it). Append only: a source's
# place sets its seed. The first edition trained on the first three; the second added the last two.
SOURCES = {
    "utkface": ("utkface", ".", "labels.csv"),
    "morph": ("morph_subset", "images", "labels.csv"),
    "chalearn": ("chalearn_lap2016_test_aligned", ".", "labels.csv"),
    "utkface_more": ("utkface_more", ".", "labels.csv"),
    "chalearn_trainval": ("chalearn_lap2016_trainval", ".", "labels.csv"),
}
FIRST_EDITION = ("utkface", "morph", "chalearn")
# the dataset each source's faces come from, for the card's tables
FAMILY = {"utkface": "UTKFace", "utkface_more": "UTKFace", "morph": "MORPH", "chalearn": "ChaLearn",
          "chalearn_trainval": "ChaLearn"}


def source_labels(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """One source's labels as (path, age, age_std, subject); paths relative to OUT/raw. Sources without
    subject ids (UTKFace, ChaLearn) give each image its own subject: the manifest needs one for every row,
    and nothing better is known."""
    path = name + "/" + table["file_name"].astype(str)
    if name.startswith("chalearn"):  # crowd mean (rounded by the label source) and crowd std
        age, std, subject = table["apparent_age_mean_rounded"], table["apparent_age_std"], path
    elif name == "morph":
        age, std, subject = table["age"], np.nan, "morph:" + table["subject_id"].astype(str)
    else:
        age, std, subject = table["age"], np.nan, path
    return pd.DataFrame({"path": path, "age": age, "age_std": std, "subject": subject, "source": name})


def assign_splits(rows: pd.DataFrame, seed: int) -> pd.Series:
    """test / valid / train per row, by whole subjects."""
    groups = rows["subject"].to_numpy()
    split = pd.Series("train", index=rows.index)
    outer = GroupShuffleSplit(n_splits=1, test_size=HELD_OUT, random_state=seed)
    rest, test = next(outer.split(rows, groups=groups))
    split.iloc[test] = "test"
    inner = GroupShuffleSplit(n_splits=1, test_size=VALID, random_state=seed + 1)
    _, valid = next(inner.split(rest, groups=groups[rest]))
    split.iloc[rest[valid]] = "valid"
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="Folder of the sources.")
    parser.add_argument("--out", type=Path, required=True, help="Work folder (raw/ and labels.csv go here).")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    parts = []
    for offset, (name, (folder, images, label_file)) in enumerate(SOURCES.items()):
        root = (args.data / folder).resolve()
        if not (root / label_file).is_file():
            raise SystemExit(f"{root / label_file}: not found; pass --data with the folder holding "
                             f"{folder}/.")
        link = raw / name
        if not link.is_symlink():
            os.symlink((root / images).resolve(), link, target_is_directory=True)
        rows = source_labels(name, pd.read_csv(root / label_file, dtype={"subject_id": str}))
        rows["split"] = assign_splits(rows, args.seed + 10 * offset)
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True)
    tmp = args.out / ".labels.csv.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, args.out / "labels.csv")
    print(pd.crosstab(table["source"], table["split"]).to_string())
    print(f"wrote {args.out / 'labels.csv'} and {raw}/")


if __name__ == "__main__":
    main()
