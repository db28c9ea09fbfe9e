"""The one validating reader of a fold manifest, for train and eval (split a fold with `split_for_fold`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from faceage.core.schema import MANIFEST, TableError, read_table
from faceage.manifest.protocols import SUBJECT_EXCLUSIVE, protocol_from_name


def read_manifest(path: str | Path, images_root: Path | None = None,
                  protocol: str | None = None) -> pd.DataFrame:
    """Read and validate a manifest: schema, val_fold, subject exclusivity (se/lopo, given or from the file
    name) and, with `images_root`, that every image exists. Records protocol and source in `df.attrs`."""
    path = Path(path)
    df = read_table(path, MANIFEST)
    if "val_fold" not in df.columns:
        df["val_fold"] = -1
    fold, val = df["fold"].to_numpy(), df["val_fold"].to_numpy()
    _fail_at(path, (val == fold) & (val >= 0), "val_fold", "equals the row's own fold (a row cannot validate "
             "the model it tests); rebuild the manifest")
    _fail_at(path, (val >= 0) & ~np.isin(val, fold), "val_fold", "names a test fold that has no rows")
    protocol = protocol or protocol_from_name(path)
    if protocol in SUBJECT_EXCLUSIVE:
        subjects = df["subject"].astype(str).to_numpy()
        _fail_at(path, subjects == "", "subject", f"is empty, and a {protocol} manifest needs every subject")
        first_fold = pd.Series(fold).groupby(subjects).transform("first").to_numpy()
        _fail_at(path, first_fold != fold, "subject",
                 f"is also in another fold; a {protocol} manifest keeps each subject in one fold")
    if images_root is not None:
        missing = np.array([not (images_root / p).is_file() for p in df["path"]], dtype=bool)
        if missing.any():
            names = df["path"][missing]
            _fail_at(path, missing, "path", f"{names.iloc[0]!r} is not a file under {images_root} "
                     f"({len(names)} missing in all, e.g. {', '.join(names.head(3))}); point to the aligned "
                     f"folder the manifest was built for, or rerun faceage align")
    df.attrs.update(protocol=protocol, source=str(path))
    return df


def _fail_at(path: Path, bad: np.ndarray, column: str, what: str) -> None:
    """Raise for the first row flagged in `bad`, naming file, row (header = line 1) and column."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(f"{path}, row {row + 2}, column '{column}': {what}.")
