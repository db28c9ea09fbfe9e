"""The metrics every table lists, declared once: key, column label, how it is computed and how it is shown.

Renderers never name a metric: they iterate `scored_at(scope)`, so a metric added to `METRICS` appears in
the console, report.md, metrics.json, `faceage train`'s fold table and the comparisons of runs (study.json,
`faceage eval --group-by`, `faceage study`). A metric is scored at the scopes it names:
- "input": each evaluated table (the headline row, metrics.json's top level);
- "fold": each test fold, and the mean ± sample std across folds;
- "run": each run of a compared group, and the mean ± sample std over the group's runs (seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from faceage.evaluate.formatting import num, pct
from faceage.evaluate.metrics import CS_REPORT_THETA, TOL, abs_errors, cs_at, epsilon_error, mae

Floats = NDArray[np.float64]
Scope = Literal["input", "fold", "run"]
Scores = dict[str, float | None]  # metric key → value, None where the table lacks what the metric needs
EVERYWHERE: frozenset[Scope] = frozenset(("input", "fold", "run"))


def _floats(x: ArrayLike) -> Floats:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class Predictions:
    """What a metric reads: true age, prediction, and where the table has them the unrounded mean, the
    crowd std (`age_std`, for the ε-error) and the median age of each face's training rows (`train_median`,
    the baseline)."""

    age: Floats
    pred: Floats
    mean: Floats | None = None
    age_std: Floats | None = None
    train_median: Floats | None = None

    @classmethod
    def of(cls, age: ArrayLike, pred: ArrayLike, mean: ArrayLike | None = None,
           age_std: ArrayLike | None = None, train_median: ArrayLike | None = None) -> Predictions:
        """From columns or lists; an optional column left out stays None."""
        return cls(_floats(age), _floats(pred), *(None if x is None else _floats(x)
                                                  for x in (mean, age_std, train_median)))

    @classmethod
    def of_table(cls, table: pd.DataFrame) -> Predictions:
        """From a validated predictions table, with whichever optional columns it has."""
        return cls.of(table["age"], table["pred"], table.get("mean"), table.get("age_std"),
                      table.get("train_median"))

    def rows(self, keep: NDArray[np.bool_]) -> Predictions:
        """The rows where `keep` is true (one test fold)."""
        return Predictions(self.age[keep], self.pred[keep], *(None if x is None else x[keep]
                                                              for x in (self.mean, self.age_std,
                                                                        self.train_median)))


@dataclass(frozen=True)
class Spread:
    """Mean and sample std (ddof = 1) of one metric over folds or runs: std None with a single value, both
    None where a value is missing (ε-error without crowd stds)."""

    mean: float | None
    std: float | None


@dataclass(frozen=True)
class Metric:
    """One metric: `key` names it in JSON (and `<key>_mean`, `<key>_std` over folds or runs), `label` heads
    its column, `compute` scores a table (None where the table lacks a column it needs). Tables show it with
    `digits` decimals, as a percentage when `percent` (the value is a fraction); `note`, where given, is
    report.md's sentence on what the number is."""

    key: str
    label: str
    compute: Callable[[Predictions], float | None]
    digits: int
    percent: bool = False
    scopes: frozenset[Scope] = EVERYWHERE
    json_name: str = ""  # its name at metrics.json's top level, where that is not `key`
    note: str = ""

    def text(self, value: float | None) -> str:
        """One value as every table shows it ("—" when missing)."""
        return pct(value, self.digits) if self.percent else num(value, self.digits)

    def text_spread(self, spread: Spread) -> str:
        """"mean ± std", or the mean alone where there is no std."""
        mean = self.text(spread.mean)
        return mean if spread.std is None else f"{mean} ± {self.text(spread.std)}"


def _mae(p: Predictions) -> float:
    return mae(p.pred, p.age)


def _mae_of_mean(p: Predictions) -> float | None:
    return None if p.mean is None else mae(p.mean, p.age)


def _cs(p: Predictions) -> float:
    return cs_at(abs_errors(p.pred, p.age), CS_REPORT_THETA)


def _epsilon(p: Predictions) -> float | None:
    return None if p.age_std is None else epsilon_error(p.pred, p.age, p.age_std).value


def _median_baseline(p: Predictions) -> float | None:
    if p.train_median is None or np.isnan(p.train_median).any():
        return None
    return mae(p.train_median, p.age)


METRICS: tuple[Metric, ...] = (
    Metric("mae", "MAE", _mae, digits=2, note="MAE uses `pred` as given."),
    Metric("mae_unrounded", "MAE (mean)", _mae_of_mean, digits=2, scopes=frozenset({"input"}),
           note="MAE (mean) uses the unrounded `mean`."),
    Metric("cs5", f"CS@{CS_REPORT_THETA}", _cs, digits=1, percent=True,
           note=f"CS@{CS_REPORT_THETA} is the share of faces with |pred − age| ≤ {CS_REPORT_THETA} years "
                f"(ties count, tolerance {TOL:g})."),
    Metric("eps", "ε-error", _epsilon, digits=4, scopes=frozenset({"input", "run"}),
           json_name="epsilon_error"),  # report.md explains it per input, with its σ = 0 count
    Metric("median_mae", "median baseline", _median_baseline, digits=2, scopes=frozenset({"input", "fold"}),
           note="The median baseline is the MAE of predicting every face as the median age of its fold's "
                "training rows (`train_median`, which `faceage train` records): a model that does not beat "
                "it has learnt nothing; — where the table does not record it."),
)
PRIMARY = "mae"  # the metric whose spread across folds the headline table shows


def scored_at(scope: Scope) -> list[Metric]:
    """The registered metrics scored at `scope`, in the order tables list them."""
    return [m for m in METRICS if scope in m.scopes]


def metric(key: str) -> Metric:
    """The registered metric named `key`."""
    return next(m for m in METRICS if m.key == key)


def score(p: Predictions, scope: Scope) -> Scores:
    """The value of each metric scored at `scope`."""
    return {m.key: m.compute(p) for m in scored_at(scope)}


def spreads(scores: Sequence[Mapping[str, float | None]]) -> dict[str, Spread]:
    """Each metric's mean ± sample std over `scores` (one mapping per fold or run, all with the same keys)."""
    out: dict[str, Spread] = {}
    for key in scores[0].keys() if scores else []:
        values = [s[key] for s in scores]
        if any(v is None for v in values):
            out[key] = Spread(None, None)
            continue
        arr = np.asarray(values, dtype=np.float64)
        out[key] = Spread(float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None)
    return out


def spread_fields(by_key: Mapping[str, Spread]) -> dict[str, float | None]:
    """`<key>_mean` and `<key>_std` of each metric: the JSON form (fold_summary, study.json's losses)."""
    return {f"{key}_{part}": value for key, s in by_key.items()
            for part, value in (("mean", s.mean), ("std", s.std))}
