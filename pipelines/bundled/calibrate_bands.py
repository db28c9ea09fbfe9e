"""The bundled model's std, honest at every age? Factors per predicted-age band fitted on its validation
faces (never the held-out ones) as train's `--calibrate-bands` fits them (model/calibration.py: about
68.3 % of every true-age band within 1 std, the penalty on jumps chosen by cross-validation), and the
shares within 1 and 2 std per true-age band on the validation and the held-out faces with the one scale
and with the factors.

    python pipelines/bundled/calibrate_bands.py --data ../shared/data            # measure only
    python pipelines/bundled/calibrate_bands.py --data ../shared/data --write    # then stamp the file

`--write` puts the factors into the file's metadata (`faceage.std_bands`; the graph is untouched,
so ages and MAE cannot move) and rewrites its sha256. The faces go through `faceage predict`'s own path;
factors the file already carries are divided out first, so a second run fits from the same stds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from editions import BANDS
from rich.table import Table
from splits import HERE, predicted, split_rows

from faceage.core.atomic import atomic_path
from faceage.core.console import console
from faceage.evaluate.metrics import GroupStats, calibrate, per_group
from faceage.model.calibration import StdBands, choose_smoothness, fit_coverage
from faceage.predict.onnx_model import META_PREFIX
from faceage.zoo import bundled_model, write_checksum


def group_table(title: str, faces: pd.DataFrame, fits: dict[str, StdBands | None]) -> Table:
    """Per true-age band: the shares within 1 / 2 std with each fit (None: the std as the model gives it)."""
    table = Table(title=title)
    for name in ("true age", "faces", *fits):
        table.add_column(name, justify="left" if name == "true age" else "right")
    columns = [per_group(faces["pred"], faces["age"], (faces["mean"], faces["std"] if bands is None
                                                       else bands.apply(faces["mean"], faces["std"])), BANDS)
               for bands in fits.values()]
    for groups in zip(*columns, strict=True):
        if groups[0].n:
            table.add_row(groups[0].label, str(groups[0].n), *(_shares(g) for g in groups))
    return table


def _shares(group: GroupStats) -> str:
    return f"{100 * (group.within_1std or 0):.1f} / {100 * (group.within_2std or 0):.1f} %"


def without_bands(model: Path, faces: pd.DataFrame) -> pd.DataFrame:
    """`faces` with the std before any factors `model` already carries (so that a second fit starts where
    the first did, and `--write` replaces the factors rather than stacking them)."""
    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    record = props.get(META_PREFIX + "std_bands")
    if record is None:
        return faces
    carried = StdBands.from_record(json.loads(record))
    return faces.assign(std=faces["std"] / carried.apply(faces["mean"], np.ones(len(faces))))


def stamp(path: Path, bands: StdBands) -> None:
    """Write the factors into `path`'s metadata (graph untouched) and rewrite its sha256."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props[META_PREFIX + "std_bands"] = json.dumps(bands.to_record())
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    with atomic_path(path) as partial:  # the shipped file is never half written
        onnx.save(model, str(partial))
    write_checksum(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--model", type=Path, default=None, help="the .onnx to calibrate (default: bundled)")
    p.add_argument("--write", action="store_true", help="stamp the factors into that file")
    args = p.parse_args()
    rows = split_rows(args.data)
    model = args.model or bundled_model()
    valid, held = (without_bands(model, predicted(model, rows[rows["split"] == split]))
                   for split in ("valid", "test"))
    weight, losses = choose_smoothness(valid["mean"], valid["std"], valid["age"])
    console.print("penalty on jumps, cross-validated loss on the validation faces: "
                  f"{', '.join(f'{w:g}: {loss:.4f}' for w, loss in losses.items())}; chosen {weight:g}")
    bands = fit_coverage(valid["mean"], valid["std"], valid["age"], weight)
    spans = zip(bands.edges, bands.edges[1:], bands.factors, strict=False)
    console.print("factors per predicted-age band: " + ", ".join(f"[{lo:g}, {hi:g}) {f:.2f}"
                                                                 for lo, hi, f in spans))
    fits = {"one scale": None, "factors by age": bands}
    for title, faces in (("validation", valid), ("held-out", held)):
        console.print(group_table(f"{title} faces ({len(faces)}), within 1 / 2 std by true age", faces, fits))
        for name, fit in fits.items():
            std = faces["std"] if fit is None else fit.apply(faces["mean"], faces["std"])
            shares = calibrate(faces["mean"], faces["age"], std, "mean")
            console.print(f"  {title}, all, {name}: {100 * shares.within_1std:.1f} / "
                          f"{100 * shares.within_2std:.1f} %")
    if args.write:
        stamp(model, bands)
        console.print(f"wrote the factors into {model} and its sha256")


if __name__ == "__main__":
    main()
