"""Labels encoded in file names (MORPH II, FG-NET, UTKFace): the patterns, and parsing a list of names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd

from faceage.core.errors import FaceageError
from faceage.manifest.labels import Labels, dropped_rows, finish_labels


@dataclass(frozen=True)
class NamePattern:
    """How a dataset encodes labels in a file name (matched against the base name, case-insensitively)."""

    regex: re.Pattern[str]
    expected: str
    age_group: int
    subject_group: int | None


PATTERNS = {
    "morph2": NamePattern(re.compile(r"^(\d+)_(\d+)([MF])(\d{2})\.jpe?g$", re.I),
                          "SSSSSS_NNGAA.JPG (subject, picture index, sex M/F, age), e.g. 009055_1M54.JPG",
                          4, 1),
    "fgnet": NamePattern(re.compile(r"^(\d{3})A(\d{2})[A-Z]?\.jpg$", re.I),
                         r"^(\d{3})[Aa](\d{2})[a-zA-Z]?\.(jpg|JPG)$, e.g. 001A02.JPG or 001A43a.JPG", 2, 1),
    "utkface": NamePattern(re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{17})\.jpg(\.chip\.jpg)?$", re.I),
                           "age_gender_race_datetime.jpg[.chip.jpg] (gender 0/1, race 0-4, "
                           "17-digit datetime), e.g. 25_0_1_20170116174525125.jpg.chip.jpg", 1, None),
}
NAMED_DATASETS = tuple(PATTERNS)


def labels_from_names(dataset: str, names: Sequence[str], origin: str,
                      skip_malformed: bool = False) -> Labels:
    """Parse age (and subject) from image names of a name-encoded dataset (morph2, fgnet, utkface)."""
    if dataset not in PATTERNS:
        raise FaceageError(f"{dataset} labels are not in the file names; pass its label file with --labels.")
    pattern = PATTERNS[dataset]
    rows, bad = [], []
    for name in names:
        match = pattern.regex.match(PurePosixPath(name).name)
        if match is None:
            bad.append(name)
            continue
        subject = match.group(pattern.subject_group) if pattern.subject_group else ""
        rows.append({"path": name, "age": match.group(pattern.age_group), "subject": subject})
    if bad and not skip_malformed:
        raise FaceageError(
            f"{origin}: {len(bad)} of {len(names)} names do not match the {dataset} pattern "
            f"{pattern.expected}; "
            f"for example {', '.join(bad[:5])}. Rename or remove them, or pass --skip-malformed to drop them "
            f"(they are then listed as dropped)."
        )
    dropped = dropped_rows(bad, "malformed name", f"expected {pattern.expected}")
    return finish_labels(pd.DataFrame(rows, columns=["path", "age", "subject"]), dataset, origin, dropped)
