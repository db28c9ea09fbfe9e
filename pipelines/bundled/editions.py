"""Two editions of the bundled model side by side on the same held-out faces, per source and per age band.

    python pipelines/bundled/editions.py --data ../shared/data --old FIRST.onnx --new SECOND.onnx

Both files predict every held-out face (prepare.py's `test` split, which neither trained on) through
`faceage predict`'s own path. The tables, in Markdown for the model card:
- per dataset (UTKFace, MORPH, ChaLearn) and in all: faces predicted of those held out, MAE, CS@5, the
  shares within 1 and 2 predicted stds, and ChaLearn's ε-error;
- per true-age band (0–12, 13–19, 20–39, 40–59, 60–79, 80+, then 60+ as the issue's target has
  it), for UTKFace and for all sources: faces, MAE, bias (mean of pred − age) and the share within 1 std.
Each table is printed twice: on the first edition's held-out faces (the sources it had), and on every
held-out face of the second edition's sources. The first edition's file is in git:
`git show <commit>:faceage/zoo/faceage-age-lite0.onnx > first.onnx`.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import pandas as pd
from splits import HERE, _prepare_module, predicted, split_rows

from faceage.evaluate.metrics import calibrate, cs_at, epsilon_error, mae, per_group
from faceage.model.calibration import TRUE_AGE_EDGES

_EDGES = (*TRUE_AGE_EDGES, math.inf)  # the true-age bands the calibration is fitted on: 0–12, …, 80+
BANDS = tuple((f"{lo:g}–{hi - 1:g}" if hi < math.inf else f"{lo:g}+", lo, hi)
              for lo, hi in itertools.pairwise(_EDGES))
TABLE_BANDS = (*BANDS, ("60+", 60, math.inf))  # the band tables' rows: BANDS, then the target's 60+


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def source_rows(name: str, part: pd.DataFrame, held: int) -> list[str]:
    shares = calibrate(part["mean"], part["age"], part["std"], "mean")
    crowd = part["age_std"].notna().all()
    eps = epsilon_error(part["pred"], part["age"], part["age_std"]).value if crowd else None
    return [name, f"{len(part)}/{held}", f"{mae(part['pred'], part['age']):.2f}",
            f"{100 * cs_at((part['pred'] - part['age']).abs(), 5):.1f} %",
            f"{100 * shares.within_1std:.1f} / {100 * shares.within_2std:.1f} %",
            "" if eps is None else f"{eps:.3f}"]


def band_cells(part: pd.DataFrame) -> list[list[str]]:
    """Per band: [faces, MAE, bias, within 1 std] (empty cells for an empty band)."""
    groups = per_group(part["pred"], part["age"], (part["mean"], part["std"]), TABLE_BANDS)
    return [[str(g.n), f"{g.mae:.2f}", f"{g.bias:+.2f}", f"{100 * (g.within_1std or 0):.1f} %"] if g.n
            else ["0", "", "", ""] for g in groups]


def report(title: str, old: pd.DataFrame, new: pd.DataFrame, held: pd.DataFrame) -> None:
    print(f"\n### {title}: {len(held)} held-out faces\n")
    rows = []
    for family, part in held.groupby("family"):
        for edition, table in (("first", old), ("second", new)):
            rows.append([edition, *source_rows(str(family), table[table["family"] == family], len(part))])
    rows += [[edition, *source_rows("all", table, len(held))] for edition, table in (("first", old),
                                                                                    ("second", new))]
    print(markdown(["edition", "source", "faces", "MAE", "CS@5", "within 1 / 2 std", "ε-error"], rows))
    for scope in ("UTKFace", "all"):
        first, second = (band_cells(t if scope == "all" else t[t["family"] == scope]) for t in (old, new))
        print(f"\n{scope} by true age (first → second edition)\n")
        print(markdown(["age", "faces", "MAE", "bias", "within 1 std"],
                       [[label, a[0], *(f"{x} → {y}" for x, y in zip(a[1:], b[1:], strict=True))]
                        for (label, _, _), a, b in zip(TABLE_BANDS, first, second, strict=True)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--old", type=Path, required=True, help="the first edition's .onnx")
    p.add_argument("--new", type=Path, required=True, help="the second edition's .onnx")
    args = p.parse_args()
    prepare = _prepare_module()
    rows = split_rows(args.data)
    held = rows[rows["split"] == "test"].assign(family=lambda t: t["source"].map(prepare.FAMILY))
    old, new = predicted(args.old, held), predicted(args.new, held)
    def firsts(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["source"].isin(prepare.FIRST_EDITION)]

    report("The first edition's held-out faces", firsts(old), firsts(new), firsts(held))
    report("Every held-out face", old, new, held)


if __name__ == "__main__":
    main()
