"""The one validating reader of a fold manifest, for train and eval (split a fold with `split_for_fold`),
and the facts a manifest records about itself (its dataset and protocol columns)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.schema import MANIFEST, RECORDED_COLUMNS, TableError, read_table
from faceage.manifest.protocols import PROTOCOLS, SUBJECT_EXCLUSIVE


@dataclass(frozen=True)
class ManifestFacts:
    """What `faceage manifest` wrote into a manifest about all of it; None in manifests made before it did
    (or by hand)."""

    dataset: str | None = None
    protocol: str | None = None


def manifest_facts(path: str | Path) -> ManifestFacts:
    """The dataset and protocol a manifest records, from its header and first row only (cheap: train reads
    them to name its run before it reads the whole table). A file that cannot be read records nothing;
    `read_manifest` then names what is wrong with it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.DictReader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return ManifestFacts()
    if first is None:
        return ManifestFacts()
    return ManifestFacts(*((first.get(name) or "").strip() or None for name in RECORDED_COLUMNS))


def agreed_protocol(path: str | Path, recorded: str | None, given: str | None) -> str | None:
    """The protocol to train `path` under: the one it records; a different one given (flag or recipe) is
    refused, naming both. Neither: None (a manifest from before protocols were recorded)."""
    if recorded is not None and given is not None and given != recorded:
        raise FaceageError(f"{path} is a {recorded} manifest (its 'protocol' column), not {given}: drop "
                           f"--protocol (or the recipe's protocol:), or build a {given} manifest with "
                           f"`faceage manifest … --protocol {given}`.")
    return recorded or given


def read_manifest(path: str | Path, images_root: Path | None = None,
                  protocol: str | None = None) -> pd.DataFrame:
    """Read and validate a manifest: schema, val_fold, one dataset and protocol in every row (`protocol`,
    when given, must be the recorded one), subject exclusivity (se/lopo) and, with `images_root`, that every
    image exists. Records protocol and source in `df.attrs`."""
    path = Path(path)
    df = read_table(path, MANIFEST)
    if "val_fold" not in df.columns:
        df["val_fold"] = -1
    for name in RECORDED_COLUMNS:
        if name in df.columns:
            _fail_at(path, (df[name] != df[name].iloc[0]).to_numpy(), name,
                     f"differs from the first row's {df[name].iloc[0]!r}; a manifest holds one {name}")
    recorded = str(df["protocol"].iloc[0]) if "protocol" in df.columns and len(df) else None
    _fail_at(path, np.array([recorded is not None and recorded not in PROTOCOLS]), "protocol",
             f"{recorded!r} is not one of {', '.join(PROTOCOLS)}; rebuild the manifest with `faceage "
             f"manifest`")
    protocol = agreed_protocol(path, recorded, protocol)
    if protocol is None:
        log.warning("%s records no protocol (written before manifests did, or by hand): its folds are used "
                    "as they are, unchecked; pass --protocol to check them, or rebuild it", path)
    fold, val = df["fold"].to_numpy(), df["val_fold"].to_numpy()
    _fail_at(path, (val == fold) & (val >= 0), "val_fold", "equals the row's own fold (a row cannot validate "
             "the model it tests); rebuild the manifest")
    _fail_at(path, (val >= 0) & ~np.isin(val, fold), "val_fold", "names a test fold that has no rows")
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
