"""The run folder of `faceage train` and every file in it (written by rank 0 only, each atomically).

```
runs/<name>/config.yaml          the resolved config (what --resume continues)
            log.txt              the log of every session on this run
            history.csv          one row per fold and epoch: loss terms, lr, train/val MAE, img/s, seconds
            fold<k>/last.pt      training state after the latest epoch (or at Ctrl-C); a finished fold
                                 keeps it only with keep_last
            fold<k>/best.pt      model of the epoch with the lowest validation MAE (else the last epoch)
            fold<k>/predictions.csv, fold<k>/distributions.npz   the fold's test predictions (fold finished)
            predictions.csv      test predictions of every finished fold (PREDICTIONS table; eval reads it)
            distributions.npz    `path` (N,) and `probs` (N, 101) float16 in the order of predictions.csv
```
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faceage.core.atomic import atomic_path, write_csv_atomic, write_text_atomic
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.layout import PREDICTIONS_CSV, RUN_CONFIG
from faceage.core.lock import LOCK_FILE, folder_lock
from faceage.core.schema import PREDICTIONS, read_table, validate
from faceage.train.config import TrainConfig, load_saved_config, resolve_config, resume_conflicts

LOG = "log.txt"
HISTORY = "history.csv"
DISTRIBUTIONS = "distributions.npz"
MANIFEST_DIGEST = "manifest.sha256"
CHECKPOINT_NAMES = ("last.pt", "best.pt")
PREDICTION_COLUMNS = ["path", "age", "age_std", "subject", "fold", "pred", "mean", "std", "train_median"]


def resolve_run_config(recipe: str | Path | None, flags: Mapping[str, Any], resume: bool) -> TrainConfig:
    """The config of this invocation, refusing anything that would overwrite or silently alter a run.

    A folder that already holds a run needs `--resume`; resuming starts from the saved config (so the run
    folder alone is enough) and refuses flags or a recipe that would change what the run computes (more
    epochs are allowed, see `resume_conflicts`). A folder whose run never saved a checkpoint (it failed
    before training: weights not found offline, an undecodable image) holds nothing to protect: it starts
    afresh with the new settings (on `--resume`, the saved config < recipe < flags).
    """
    cfg = resolve_config(recipe, flags)
    saved_path = Path(cfg.run_dir()) / RUN_CONFIG
    if cfg.run_dir().exists() and not cfg.run_dir().is_dir():
        raise FaceageError(f"--out {cfg.run_dir()}: is a file, not a run folder; choose a folder path.")
    if not saved_path.exists():
        if RunFolder(cfg.run_dir()).has_checkpoints():
            raise FaceageError(f"{cfg.run_dir()} holds checkpoints but no {RUN_CONFIG}: it is not a complete "
                               "run, and its settings are unknown; move it aside, or choose another --out.")
        if resume:
            log.info("%s holds no run yet: starting it afresh", cfg.run_dir())
        return cfg
    if not RunFolder(cfg.run_dir()).has_checkpoints():
        log.info("%s holds the settings of a run that never trained (no checkpoint): starting it afresh",
                 cfg.run_dir())
        return resolve_config(recipe, flags, base=load_saved_config(saved_path)) if resume else cfg
    if not resume:
        raise FaceageError(
            f"{cfg.run_dir()} already holds a run ({RUN_CONFIG}); pass --resume to continue it, "
            f"or pick a fresh folder with --out."
        )
    saved = load_saved_config(saved_path)
    cfg = resolve_config(recipe, flags, base=saved)
    changed = resume_conflicts(cfg, saved)
    if changed:
        raise FaceageError(
            f"{saved_path}: --resume would change the run's settings ({'; '.join(changed)}); "
            f"drop those flags to continue it, or pick a fresh folder with --out."
        )
    return cfg


class RunFolder:
    """Reads and writes one run folder; `writer` is False on ranks other than 0, which write nothing."""

    def __init__(self, root: str | Path, writer: bool = True) -> None:
        self.root = Path(root)
        self.writer = writer
        self._log_handler: logging.Handler | None = None

    def start(self, cfg: TrainConfig) -> None:
        """Create the folder, save the resolved config and copy the log into log.txt."""
        if not self.writer:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / RUN_CONFIG, cfg.to_yaml())
        handler = logging.FileHandler(self.root / LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        self._log_handler = handler

    def check_manifest(self, manifest: Path) -> None:
        """Refuse to continue a run on a manifest whose contents changed since it began (its folds would
        mix two splits); a run without checkpoints yet records the manifest it starts from."""
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        recorded = self.root / MANIFEST_DIGEST
        if self.has_checkpoints() and not recorded.is_file():
            raise FaceageError(f"{self.root} holds checkpoints but no {MANIFEST_DIGEST}: which manifest it "
                               "trained on is unknown; move it aside, or train into a fresh --out.")
        if self.has_checkpoints() and recorded.read_text().strip() != digest:
            raise FaceageError(
                f"{manifest} has changed since {self.root} began training on it ({MANIFEST_DIGEST} differs): "
                "its folds would mix two splits. Restore that manifest, or train into a fresh --out."
            )
        if self.writer and not (self.has_checkpoints() and recorded.is_file()):
            self.root.mkdir(parents=True, exist_ok=True)
            write_text_atomic(recorded, digest + "\n")

    def close(self) -> None:
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold{fold}"

    def last_path(self, fold: int) -> Path:
        return self.fold_dir(fold) / "last.pt"

    def best_path(self, fold: int) -> Path:
        return self.fold_dir(fold) / "best.pt"

    def drop_last(self, fold: int) -> None:
        """Delete a finished fold's last.pt (its best.pt and predictions stay)."""
        if self.writer:
            self.last_path(fold).unlink(missing_ok=True)

    def has_checkpoints(self) -> bool:
        """Whether any fold has saved a checkpoint (the run has trained something worth keeping); the
        temporaries a killed save left (`.last.pt.*.tmp.pt`) do not count."""
        return any(p.is_file() for name in CHECKPOINT_NAMES for p in self.root.glob(f"fold*/{name}"))

    def discard_if_untrained(self) -> None:
        """Remove what a run that never saved a checkpoint wrote (its config, log, manifest fingerprint,
        cache temporaries), keeping only the lock file while the lock is held: nothing there is worth
        resuming. A folder with a checkpoint is left alone."""
        if self.has_checkpoints() or not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def remove_if_only_lock(self) -> None:
        """After the lock is released: remove the folder when all it holds is the lock file."""
        with contextlib.suppress(OSError):
            if [p.name for p in self.root.iterdir()] == [LOCK_FILE]:
                (self.root / LOCK_FILE).unlink()
                self.root.rmdir()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The run folder's lock, held for the whole job: a second `faceage train` into it is refused."""
        return folder_lock(self.root, "the run folder")

    def fold_finished(self, fold: int, epochs: int) -> bool:
        """Finished: the fold's test predictions are written (its last act) after `epochs` epochs."""
        if not (self.fold_dir(fold) / PREDICTIONS_CSV).exists():
            return False
        history = self.history()
        done = history.loc[history["fold"] == fold, "epoch"] if not history.empty else history
        return len(done) > 0 and int(done.max()) >= epochs

    def history(self) -> pd.DataFrame:
        path = self.root / HISTORY
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def add_history(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's row, replacing a row of the same fold and epoch (left by an interrupted run)."""
        if not self.writer:
            return
        old = self.history()
        if not old.empty:
            old = old[~((old["fold"] == row["fold"]) & (old["epoch"] == row["epoch"]))]
        new = pd.DataFrame([dict(row)])
        table = new if old.empty else pd.concat([old, new], ignore_index=True)
        write_csv_atomic(table.sort_values(["fold", "epoch"], ignore_index=True), self.root / HISTORY)

    def write_fold_predictions(self, fold: int, table: pd.DataFrame, probs: np.ndarray | None) -> None:
        """Save a finished fold's test predictions (and distributions when the head has them)."""
        if not self.writer:
            return
        table = validate(table[PREDICTION_COLUMNS], PREDICTIONS, f"fold {fold} predictions")
        if probs is not None:
            _save_distributions(self.fold_dir(fold) / DISTRIBUTIONS, table["path"].tolist(), probs)
        write_csv_atomic(table, self.fold_dir(fold) / PREDICTIONS_CSV)

    def read_fold_predictions(self, fold: int) -> pd.DataFrame:
        return read_table(self.fold_dir(fold) / PREDICTIONS_CSV, PREDICTIONS)

    def predicted_folds(self) -> list[int]:
        """Folds whose test predictions are written, in order."""
        found = (p.parent.name.removeprefix("fold") for p in self.root.glob(f"fold*/{PREDICTIONS_CSV}"))
        return sorted(int(k) for k in found if k.isdigit())

    def merge_predictions(self) -> pd.DataFrame:
        """Write predictions.csv (and distributions.npz) of every fold with predictions, in fold order
        (folds trained by earlier `--fold k` sessions of the run included)."""
        folds = self.predicted_folds()
        tables = [self.read_fold_predictions(k) for k in folds]
        # reindex: folds predicted before train_median was recorded have no such column
        merged = pd.concat(tables, ignore_index=True).reindex(columns=PREDICTION_COLUMNS)
        if not self.writer:
            return merged
        write_csv_atomic(merged, self.root / PREDICTIONS_CSV)
        dist_files = [self.fold_dir(k) / DISTRIBUTIONS for k in folds]
        if all(p.exists() for p in dist_files):
            parts = [np.load(p) for p in dist_files]
            paths = np.concatenate([p["path"] for p in parts]).tolist()
            _save_distributions(self.root / DISTRIBUTIONS, paths, np.concatenate([p["probs"] for p in parts]))
        return merged


def _save_distributions(target: Path, paths: list[str], probs: np.ndarray) -> None:
    if probs.shape[0] != len(paths):
        raise ValueError(f"{len(paths)} paths but {probs.shape[0]} distributions")
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, path=np.asarray(paths, dtype=str), probs=probs.astype(np.float16))
