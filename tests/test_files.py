"""The one image walker: every stage that lists images under a folder sees the same files, linked folders
included (manifest --pre-aligned used to walk with rglob, which skips them, and found nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceage.align.run import align_folder
from faceage.align.settings import AlignSettings
from faceage.core.errors import FaceageError
from faceage.core.files import list_images, read_yaml_mapping
from faceage.manifest.build import build_manifest


@pytest.fixture
def linked_dataset(utkface_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder whose only images lie in a linked folder (as when a dataset is symlinked into raw/), plus a
    link back up the tree that must not loop."""
    names = sorted(p.name for p in utkface_dir.iterdir()
                   if p.name.endswith(".chip.jpg") and int(p.name.split("_")[0]) <= 90)[:12]  # kept ages
    store = tmp_path / "store"
    store.mkdir()
    for name in names:
        (store / name).symlink_to(utkface_dir / name)
    root = tmp_path / "raw"
    root.mkdir()
    (root / "utk").symlink_to(store, target_is_directory=True)
    (store / "up").symlink_to(root, target_is_directory=True)
    return root, [f"utk/{n}" for n in names]


def test_the_walk_enters_linked_folders_once(linked_dataset: tuple[Path, list[str]]) -> None:
    root, expected = linked_dataset
    (root / ".hidden.jpg").write_bytes(b"")  # listed: it gets a row saying why it cannot be used
    assert list_images(root) == sorted([".hidden.jpg", *expected])


def test_manifest_pre_aligned_finds_a_linked_dataset(linked_dataset: tuple[Path, list[str]]) -> None:
    root, expected = linked_dataset
    result = build_manifest("utkface", "rs", root, source="pre-aligned", folds=2, val_fraction=0.0)
    assert sorted(result.manifest["path"]) == expected


def test_align_and_manifest_see_the_same_linked_files(linked_dataset: tuple[Path, list[str]],
                                                      tmp_path: Path) -> None:
    root, expected = linked_dataset
    summary = align_folder(root, tmp_path / "aligned", AlignSettings(), workers=1, progress=False)
    assert summary.total == len(expected)
    aligned = build_manifest("utkface", "rs", tmp_path / "aligned", folds=2, val_fraction=0.0)
    pre = build_manifest("utkface", "rs", root, source="pre-aligned", folds=2, val_fraction=0.0)
    assert len(aligned.manifest) == len(pre.manifest) == summary.counts.get("ok", 0) == len(expected)


def test_yaml_mapping_errors_name_the_file(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(FaceageError, match=r"list\.yaml: a recipe must be a mapping"):
        read_yaml_mapping(listed)
    assert read_yaml_mapping(_write(tmp_path / "ok.yaml", "epochs: 3\n")) == {"epochs": 3}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
