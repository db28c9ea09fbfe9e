"""Per test fold: each fold's scores, their mean ± sample std across folds, and the table of both that
report.md's "Per fold" section and `faceage train`'s console show. No matplotlib, so training imports it
cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from rich.table import Table

from faceage.evaluate.formatting import rich_table
from faceage.evaluate.registry import Predictions, Scores, Spread, score, scored_at, spreads


@dataclass(frozen=True)
class FoldStats:
    """Size and scores (the registry's "fold" metrics) of one test fold."""

    fold: int
    n: int
    scores: Scores

    @property
    def mae(self) -> float | None:
        """The fold's MAE, the number training is judged by."""
        return self.scores["mae"]


@dataclass(frozen=True)
class FoldSummary:
    """Mean ± sample std across folds of each "fold" metric, by key."""

    n_folds: int
    spreads: dict[str, Spread]


def per_fold(pred: ArrayLike, age: ArrayLike, fold: ArrayLike, *, mean: ArrayLike | None = None,
             age_std: ArrayLike | None = None, train_median: ArrayLike | None = None) -> list[FoldStats]:
    """Scores of each fold, in increasing fold order; the optional columns feed the metrics that read them."""
    p = Predictions.of(age, pred, mean, age_std, train_median)
    fold_a = np.asarray(fold, dtype=np.int64)
    return [FoldStats(int(k), int((fold_a == k).sum()), score(p.rows(fold_a == k), "fold"))
            for k in np.unique(fold_a).tolist()]


def summarize_folds(folds: list[FoldStats]) -> FoldSummary:
    """Mean ± sample std across folds: each fold counts once, whatever its size (the paper's protocol)."""
    return FoldSummary(len(folds), spreads([f.scores for f in folds]))


def fold_rows(folds: list[FoldStats]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per fold, then the mean ± sample std across the folds."""
    metrics = scored_at("fold")
    summary = summarize_folds(folds)
    rows = [[str(f.fold), str(f.n), *(m.text(f.scores[m.key]) for m in metrics)] for f in folds]
    rows.append(["mean ± std", "", *(m.text_spread(summary.spreads[m.key]) for m in metrics)])
    return ["fold", "n", *(m.label for m in metrics)], rows


def fold_table(title: str, folds: list[FoldStats]) -> Table:
    """The fold rows as a console table, the mean ± std in bold."""
    table = rich_table(title, *fold_rows(folds), text_columns=())
    table.rows[-1].style = "bold"
    return table
