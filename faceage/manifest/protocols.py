"""Evaluation protocols: which fold tests each row, which rows validate each fold, and the split of one fold.

Encoding (the manifest's `fold` and `val_fold` columns): `fold` = the test fold of the row, -1 = never tested
(the official protocol's train and valid rows); `val_fold = k` = the row validates the model whose test fold
is k, -1 = never. Validation scheme: for test fold k the validation rows are drawn from fold (k + 1) mod K,
whole subjects at a time in seeded order, until `val_fraction` of fold k's training part is reached (at most
that whole fold). A row thus validates at most one fold, never its own, and under SE/LOPO the validation
subjects share no image with the training or test part. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from faceage.core.console import log
from faceage.core.errors import FaceageError

PROTOCOLS = ("rs", "se", "lopo", "official")
SUBJECT_EXCLUSIVE = frozenset({"se", "lopo"})
MAX_AGE_BINS = 10
MAX_VAL_FRACTION = 0.5


@dataclass(frozen=True)
class FoldSplit:
    """Row positions (into the manifest) of the training, validation and test parts of one test fold."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def assign_folds(labels: pd.DataFrame, protocol: str, *, folds: int = 5, seed: int = 0,
                 val_fraction: float = 0.1) -> pd.DataFrame:
    """`fold` and `val_fold` columns (index of `labels`) for `protocol`; seeded and deterministic.

    `labels` needs `age`, `subject` ('' when unknown) and, for `official`, `split`.
    """
    if protocol not in PROTOCOLS:
        raise FaceageError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    if not 0 <= val_fraction < MAX_VAL_FRACTION:
        raise FaceageError(f"--val-fraction {val_fraction} is outside [0, {MAX_VAL_FRACTION}); "
                           f"0 turns validation off.")
    subjects = _subjects(labels, protocol)
    if protocol == "official":
        return _official(labels, subjects, val_fraction, seed)
    fold = assign_test_folds(labels["age"].to_numpy(dtype=float), subjects, protocol, folds, seed)
    val = carve_validation(fold, subjects, val_fraction, seed)
    return pd.DataFrame({"fold": fold, "val_fold": val}, index=labels.index)


def assign_test_folds(ages: np.ndarray, subjects: np.ndarray | None, protocol: str, folds: int,
               seed: int) -> np.ndarray:
    """The test fold of each row: rs stratifies images by age, se stratifies whole subjects by age
    (scikit-learn's StratifiedGroupKFold, balancing size and age), lopo gives each subject its own fold."""
    n = len(ages)
    units = n if subjects is None else len(np.unique(subjects))
    if protocol == "lopo" and subjects is not None:
        splits = LeaveOneGroupOut().split(ages, groups=subjects)  # folds in sorted subject order
    else:
        if folds < 2 or units < folds:
            what = "images" if subjects is None else "subjects"
            raise FaceageError(f"--folds {folds}: need 2 <= folds <= the number of {what} ({units}).")
        bins = _age_bins(ages, folds)
        if protocol == "rs":
            splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(ages, bins)
        else:
            splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(ages, bins, subjects)
    fold = np.full(n, -1, dtype=np.int64)
    for k, (_, test) in enumerate(splits):
        fold[test] = k
    return fold


def carve_validation(fold: np.ndarray, subjects: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """`val_fold` per row: for test fold k, whole subjects (rows if subject-less) of fold (k+1) mod K."""
    val = np.full(len(fold), -1, dtype=np.int64)
    n_folds = int(fold.max()) + 1
    if fraction <= 0 or n_folds < 2:
        return val
    capped = 0
    for k in range(n_folds):
        pool = np.flatnonzero(fold == (k + 1) % n_folds)
        target = round(fraction * int(np.sum((fold >= 0) & (fold != k))))
        capped += target > len(pool)
        val[_draw(pool, subjects, target, np.random.default_rng([seed, k]))] = k
    if capped:
        log.warning("validation capped at one fold's size for %d of %d test folds (it is drawn from the next "
                    "fold only, so each row validates one fold)", capped, n_folds)
    return val


def split_for_fold(manifest: pd.DataFrame, k: int, *, subject_exclusive: bool | None = None) -> FoldSplit:
    """Train / val / test row positions for test fold `k`; refuses a subject leak.

    `subject_exclusive` defaults to the protocol `read_manifest` recorded in `manifest.attrs` (se, lopo).
    Then a subject of the test or validation part found in another part is an error.
    """
    fold = manifest["fold"].to_numpy(dtype=np.int64)
    val_fold = (manifest["val_fold"].to_numpy(dtype=np.int64) if "val_fold" in manifest.columns
                else np.full(len(fold), -1))
    source = manifest.attrs.get("source", "manifest")
    is_test = fold == k
    if not is_test.any():
        present = sorted(int(f) for f in np.unique(fold[fold >= 0]))
        raise FaceageError(f"{source}: no rows in test fold {k}; its folds are {present}.")
    is_val = (val_fold == k) & ~is_test
    parts = FoldSplit(np.flatnonzero(~is_test & ~is_val), np.flatnonzero(is_val), np.flatnonzero(is_test))
    if len(parts.train) == 0:
        raise FaceageError(f"{source}: test fold {k} leaves no training rows; rebuild it with more folds.")
    if subject_exclusive is None:
        subject_exclusive = manifest.attrs.get("protocol") in SUBJECT_EXCLUSIVE
    if subject_exclusive:
        subjects = manifest["subject"].astype(str).to_numpy()
        for name, held in (("test", parts.test), ("validation", parts.val)):
            others = np.setdiff1d(np.arange(len(fold)), held)
            leaked = sorted(set(subjects[held]) & set(subjects[others]) - {""})
            if leaked:
                raise FaceageError(
                    f"{source}: fold {k} leaks {len(leaked)} {name} subject(s) into other parts, e.g. "
                    f"{leaked[:3]}; rebuild the manifest with `faceage manifest --protocol se|lopo`.")
    return parts


def fold_ids(manifest: pd.DataFrame) -> list[int]:
    """The test folds present in a manifest, in order."""
    return sorted(int(f) for f in manifest["fold"].unique() if f >= 0)


def _subjects(labels: pd.DataFrame, protocol: str) -> np.ndarray | None:
    """Subject ids, or None when the dataset has none (then se and lopo are refused)."""
    subjects = labels["subject"].fillna("").astype(str).str.strip().to_numpy()
    missing = int(np.sum(subjects == ""))
    if missing == len(subjects):
        if protocol in SUBJECT_EXCLUSIVE:
            raise FaceageError(f"protocol {protocol} needs subject ids and this dataset has none; use "
                               f"--protocol rs (or official where the dataset has a split).")
        return None
    if missing:
        raise FaceageError(f"{missing} of {len(subjects)} rows have no subject id; give every row one "
                           f"(or none, for a subject-less dataset).")
    return subjects


def _age_bins(ages: np.ndarray, folds: int) -> np.ndarray:
    """Equal-count age bins (each holding at least `folds` rows) to stratify folds by age."""
    n_bins = max(1, min(MAX_AGE_BINS, len(ages) // folds))
    ranks = pd.Series(ages).rank(method="first").to_numpy()
    return ((ranks - 1) * n_bins // len(ages)).astype(np.int64)


def _draw(pool: np.ndarray, subjects: np.ndarray | None, target: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `target` rows of `pool`: whole subjects in random order, or rows when subject-less."""
    if target <= 0 or len(pool) == 0:
        return pool[:0]
    if subjects is None:
        return np.sort(rng.choice(pool, size=min(target, len(pool)), replace=False))
    names, counts = np.unique(subjects[pool], return_counts=True)
    order = rng.permutation(len(names))
    reached = np.cumsum(counts[order]) >= target
    last = int(np.argmax(reached)) if reached.any() else len(order) - 1
    return pool[np.isin(subjects[pool], names[order[: last + 1]])]


def _official(labels: pd.DataFrame, subjects: np.ndarray | None, val_fraction: float,
              seed: int) -> pd.DataFrame:
    """test → fold 0; valid → val_fold 0; train → neither. Without valid rows, validation comes from train."""
    split = labels["split"].fillna("").astype(str).to_numpy()
    if not (split != "").any():
        raise FaceageError("protocol official needs the dataset's own split and these labels have none; "
                           "use --protocol rs or se (or the csv dataset with --split-col).")
    if (split == "").any():
        raise FaceageError(f"{int(np.sum(split == ''))} rows have no official split; give every row one.")
    if not (split == "test").any():
        raise FaceageError("the official split has no test rows, so nothing would be tested; add the test "
                           "list.")
    fold = np.where(split == "test", 0, -1)
    val = np.where(split == "valid", 0, -1)
    if not (split == "valid").any():
        train = np.flatnonzero(split == "train")
        val[_draw(train, subjects, round(val_fraction * len(train)), np.random.default_rng([seed, 0]))] = 0
    return pd.DataFrame({"fold": fold, "val_fold": val}, index=labels.index)
