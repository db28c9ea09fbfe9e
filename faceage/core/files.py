"""The one walk over a folder of images, and the one reader of a YAML settings file.

Every stage that looks for images under a folder (align's SRC, manifest --pre-aligned, predict's inputs,
export's parity faces) calls `list_images`, so they all see the same files: links to folders are entered,
hidden files are listed, and nothing outside the folder is reached through a loop of links.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from faceage.core.errors import FaceageError
from faceage.core.imageio import is_image_name


def list_images(root: Path, skip: Path | None = None) -> list[str]:
    """Relative POSIX paths of every image-extension file under `root`, sorted; `skip` (a resolved folder,
    e.g. align's DST) is not entered.

    Broken links and unreadable entries are listed too: they get an `unreadable` row rather than vanishing.
    Links to folders are followed (a dataset linked into the folder is walked), except into a folder already
    on the current path, which would loop.
    """
    found: list[str] = []
    above: dict[str, frozenset[Path]] = {str(root): frozenset({root.resolve()})}  # real folders up to here
    for folder, dirs, files in os.walk(root, followlinks=True):
        folder_path = Path(folder)
        real = {d: (folder_path / d).resolve() for d in dirs}
        dirs[:] = sorted(d for d in dirs if real[d] != skip and real[d] not in above[folder])
        above.update({str(folder_path / d): above[folder] | {real[d]} for d in dirs})
        found.extend(
            (folder_path / name).relative_to(root).as_posix()
            for name in files
            if is_image_name(name) and not (folder_path / name).is_dir()
        )
    return sorted(found)


def read_yaml_mapping(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """The mapping in a YAML file (a recipe, a run's config.yaml); FaceageError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FaceageError(f"{path}: no such {what}; give an existing YAML file (see pipelines/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FaceageError(f"{path}: not valid YAML ({exc}); fix the file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FaceageError(f"{path}: a {what} must be a mapping of settings (key: value), not "
                           f"{type(data).__name__}.")
    return data
