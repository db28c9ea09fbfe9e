"""The bundled model's std, honest at every age: a factor per predicted-age band fitted on its validation
faces (never the held-out ones), and the coverage per true-age group on the held-out faces before and after.

    python pipelines/bundled/calibrate_bands.py --data ../shared/data            # measure only
    python pipelines/bundled/calibrate_bands.py --data ../shared/data --write    # then stamp the file

`--write` puts the factors into the shipped file's metadata (`faceage.std_bands`; the graph is untouched,
so ages and MAE cannot move) and rewrites its sha256. Both models go through `faceage predict`'s own path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
from editions import BANDS
from rich.table import Table
from splits import HERE, predicted, split_rows

from faceage.core.console import console
from faceage.evaluate.metrics import GroupStats, per_group
from faceage.model.calibration import StdBands, fit_std_bands
from faceage.predict.onnx_model import META_PREFIX
from faceage.zoo import bundled_model, write_checksum


def group_table(title: str, before: list[GroupStats], after: list[GroupStats]) -> Table:
    table = Table(title=title)
    for name in ("true age", "faces", "within 1 / 2 std, one scale", "by band"):
        table.add_column(name, justify="left" if name == "true age" else "right")
    for b, a in zip(before, after, strict=True):
        if b.n:
            table.add_row(b.label, str(b.n), _shares(b), _shares(a))
    return table


def _shares(group: GroupStats) -> str:
    return f"{100 * (group.within_1std or 0):.1f} / {100 * (group.within_2std or 0):.1f} %"


def stamp(path: Path, bands: StdBands) -> None:
    """Write the factors into `path`'s metadata (graph untouched) and rewrite its sha256."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props[META_PREFIX + "std_bands"] = json.dumps(bands.to_record())
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    write_checksum(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--model", type=Path, default=None, help="the .onnx to calibrate (default: bundled)")
    p.add_argument("--write", action="store_true", help="stamp the factors into that file")
    args = p.parse_args()
    rows = split_rows(args.data)
    model = args.model or bundled_model()
    valid = predicted(model, rows[rows["split"] == "valid"])
    bands = fit_std_bands(valid["mean"], valid["std"], valid["age"])
    spans = zip(bands.edges, bands.edges[1:], bands.factors, strict=False)
    console.print(f"{len(valid)} validation faces; factors per predicted-age band "
                  f"{', '.join(f'[{lo:g}, {hi:g}): {f:.3f}' for lo, hi, f in spans)}")
    held = predicted(model, rows[rows["split"] == "test"])
    before = per_group(held["pred"], held["age"], (held["mean"], held["std"]), BANDS)
    banded = bands.apply(held["mean"], held["std"])
    after = per_group(held["pred"], held["age"], (held["mean"], banded), BANDS)
    console.print(group_table(f"held-out faces ({len(held)}), coverage per true-age group", before, after))
    if args.write:
        stamp(model, bands)
        console.print(f"wrote the factors into {model} and its sha256")


if __name__ == "__main__":
    main()
