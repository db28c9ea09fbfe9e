"""Protocols: SE on the MORPH subset, LOPO on the FG-NET list, validation carving, official, leak refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from faceage.core.errors import FaceageError
from faceage.manifest.build import build_manifest, write_manifest
from faceage.manifest.datasets import load_labels
from faceage.manifest.protocols import assign_folds, fold_ids, split_for_fold

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def morph(morph_dir: Path) -> pd.DataFrame:
    return load_labels("morph2", morph_dir / "images").table


def _with_folds(labels: pd.DataFrame, protocol: str, **kw: Any) -> pd.DataFrame:
    return pd.concat([labels, assign_folds(labels, protocol, **kw)], axis=1)


def test_se_on_morph_is_subject_exclusive_and_balanced(morph: pd.DataFrame) -> None:
    df = _with_folds(morph, "se")
    assert df.groupby("subject")["fold"].nunique().max() == 1
    sizes = df["fold"].value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() <= 1.1 * sizes.min()
    means = df.groupby("fold")["age"].mean()
    assert (means - df["age"].mean()).abs().max() <= 1.5


def test_se_is_deterministic_per_seed(morph: pd.DataFrame) -> None:
    first = assign_folds(morph, "se", seed=0)
    pd.testing.assert_frame_equal(first, assign_folds(morph, "se", seed=0))
    other = assign_folds(morph, "se", seed=1)
    assert (first["fold"] != other["fold"]).mean() > 0.5
    assert not first["val_fold"].equals(other["val_fold"])


def test_validation_carving_is_subject_exclusive(morph: pd.DataFrame) -> None:
    df = _with_folds(morph, "se", val_fraction=0.1)
    for k in range(5):
        part = split_for_fold(df, k, subject_exclusive=True)
        subjects = df["subject"].to_numpy()
        train, val, test = (set(subjects[i]) for i in (part.train, part.val, part.test))
        assert val and not val & train and not val & test and not test & train
        assert set(df["fold"].iloc[part.val]) == {(k + 1) % 5}  # drawn from the next fold only
        assert len(part.val) == pytest.approx(0.1 * (len(df) - len(part.test)), abs=20)
        assert len(part.train) + len(part.val) + len(part.test) == len(df)


def test_rs_splits_images_and_carves_rows_without_subjects(utkface_dir: Path) -> None:
    labels = load_labels("utkface", utkface_dir).table
    df = _with_folds(labels, "rs", folds=4, seed=3)
    assert sorted(df["fold"].value_counts()) == [1000, 1000, 1000, 1000]
    assert [int((df["val_fold"] == k).sum()) for k in range(4)] == [300] * 4
    assert (df["val_fold"] != df["fold"]).all()
    with pytest.raises(FaceageError, match="protocol se needs subject ids"):
        assign_folds(labels, "se")
    with pytest.raises(FaceageError, match="protocol lopo needs subject ids"):
        assign_folds(labels, "lopo")


def test_lopo_on_fgnet_list(fgnet_list: Path) -> None:
    result = build_manifest("fgnet", "lopo", None, labels=fgnet_list, source="labels-only")
    m = result.manifest
    assert len(m) == 1002 and fold_ids(m) == list(range(82))
    assert m.groupby("fold")["subject"].nunique().eq(1).all()
    assert m.groupby("subject")["fold"].nunique().eq(1).all()
    assert (m["age"].min(), m["age"].max()) == (0, 69)
    assert "001a02.jpg" in set(m["path"]) and "001A43a.jpg" in set(m["path"])  # aligned names


def test_committed_fgnet_lopo_equals_a_fresh_build(fgnet_list: Path, tmp_path: Path) -> None:
    result = build_manifest("fgnet", "lopo", None, labels=fgnet_list, source="labels-only")
    write_manifest(result, tmp_path / "lopo.csv")
    assert (tmp_path / "lopo.csv").read_bytes() == (REPO / "manifests" / "fgnet" / "lopo.csv").read_bytes()


def test_official_protocol() -> None:
    labels = pd.DataFrame({"age": [20.0, 30, 40, 50, 60], "subject": [""] * 5,
                           "split": ["train", "train", "valid", "test", "test"]})
    folds = assign_folds(labels, "official")
    assert folds["fold"].tolist() == [-1, -1, -1, 0, 0] and folds["val_fold"].tolist() == [-1, -1, 0, -1, -1]
    no_valid = labels.assign(split=["train"] * 3 + ["test"] * 2)
    carved = assign_folds(no_valid, "official", val_fraction=0.34)
    assert carved["val_fold"].tolist().count(0) == 1 and carved["val_fold"].iloc[3:].eq(-1).all()
    with pytest.raises(FaceageError, match="protocol official needs the dataset's own split"):
        assign_folds(labels.assign(split=""), "official")


def test_split_for_fold_refuses_a_subject_leak() -> None:
    manifest = pd.DataFrame({"path": list("abcd"), "age": [1.0] * 4, "subject": ["s1", "s1", "s2", "s3"],
                             "fold": [0, 1, 1, 2], "val_fold": [-1, -1, -1, -1]})
    with pytest.raises(FaceageError, match=r"fold 0 leaks 1 test subject\(s\).*'s1'"):
        split_for_fold(manifest, 0, subject_exclusive=True)
    part = split_for_fold(manifest, 0, subject_exclusive=False)  # RS: shared subjects are the protocol
    assert part.test.tolist() == [0] and part.train.tolist() == [1, 2, 3] and part.val.tolist() == []
    with pytest.raises(FaceageError, match=r"no rows in test fold 5; its folds are \[0, 1, 2\]"):
        split_for_fold(manifest, 5)


def test_bad_arguments(morph: pd.DataFrame) -> None:
    with pytest.raises(FaceageError, match="unknown protocol 'kfold'"):
        assign_folds(morph, "kfold")
    with pytest.raises(FaceageError, match=r"--val-fraction 0.6 is outside"):
        assign_folds(morph, "se", val_fraction=0.6)
    with pytest.raises(FaceageError, match="--folds 1"):
        assign_folds(morph, "rs", folds=1)
    assert np.all(assign_folds(morph, "rs", val_fraction=0)["val_fold"] == -1)
