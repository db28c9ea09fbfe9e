"""Compare groups of runs (one group per loss, one run per seed) on the same test images: is a better than b?

Per group: the registry's "run" metrics (MAE, CS@5, ε-error) of each run, and their mean ± sample std
(ddof = 1) over seeds.
Per pair of groups (a, b), on the test images every run of both has:
- `mae_diff` = mean over a's seeds of MAE − the same for b (negative: a errs less);
- a 95 % percentile interval from a hierarchical bootstrap: units (subjects; an image without a subject is
  its own unit) are drawn with replacement, and within each group its seeds are drawn with replacement, so
  the interval covers both the test sample and training randomness. Faces of one person share errors, so
  resampling them as independent images would give too narrow an interval;
- a p-value from a paired sign-flip permutation test (`scipy.stats.permutation_test`) on each unit's
  seed-averaged error difference: under "a and b err alike" either sign of a unit's difference is equally
  likely. It needs no normality (errors are skewed, units few for small sets) and is exact when the
  2^units flips fit in the resamples.
A pair is decided only when the interval excludes 0. Numpy and scipy only (no torch).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import permutation_test

from faceage.core.errors import FaceageError
from faceage.core.files import read_yaml_mapping
from faceage.core.layout import PREDICTIONS_CSV, RUN_CONFIG
from faceage.evaluate.metrics import abs_errors, cumulative_score
from faceage.evaluate.registry import Predictions, Scores, Spread, score, spread_fields, spreads

RESAMPLES = 2000  # bootstrap draws and permutation-test sign flips (the p-value's resolution is 1/2001)
BOOTSTRAP_SEED = 0  # the comparison is a pure function of the predictions
_CHUNK = 5_000_000  # float64 cells per bootstrap or permutation block (× 8 bytes): bounds the memory

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Member:
    """One run of a group: its label (run folder name), seed (None when unknown) and predictions table."""

    run: str
    seed: int | None
    table: pd.DataFrame


@dataclass(frozen=True)
class RunScores:
    """The registry's "run" metrics of one run, by key."""

    seed: int | None
    run: str
    scores: Scores


@dataclass(frozen=True)
class GroupSummary:
    """Each "run" metric's mean ± sample std over a group's runs, by key (std None with one run, both
    None where a run lacks the value, as ε-error without crowd stds)."""

    spreads: dict[str, Spread]
    runs: list[RunScores]
    cs_curve: list[float]  # CS(θ) for θ = 0..20, mean over the runs (the study's plot)
    cs_runs: list[list[float]]  # CS(θ) of each run


@dataclass(frozen=True)
class PairResult:
    a: str
    b: str
    mae_diff: float
    ci95: tuple[float, float]
    p_value: float
    verdict: str
    n_images: int
    n_units: int


@dataclass(frozen=True)
class Comparison:
    """Per-group summaries and every pair, with what the statistics resampled."""

    groups: dict[str, GroupSummary]
    pairs: list[PairResult]
    group_by: str
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (README, "study.json"): `losses` (per group) and `pairs`."""
        groups = {name: {**spread_fields(g.spreads),
                         "runs": [{"seed": r.seed, "run": r.run, **r.scores} for r in g.runs]}
                  for name, g in self.groups.items()}
        pairs = [{**vars(p), "ci95": list(p.ci95)} for p in self.pairs]
        return {"group_by": self.group_by, "test": "paired sign-flip permutation test on units",
                "resamples": self.resamples, "bootstrap_seed": self.seed, "losses": groups, "pairs": pairs}


def run_scores(member: Member) -> RunScores:
    """The "run" metrics of one run's predictions (None where its table lacks a column, as `age_std`)."""
    return RunScores(member.seed, member.run, score(Predictions.of_table(member.table), "run"))


def summarize_group(members: Sequence[Member]) -> GroupSummary:
    """The per-run scores of a group and their mean ± sample std over runs (seeds)."""
    runs = [run_scores(m) for m in members]
    curves = np.stack([cumulative_score(m.table["pred"], m.table["age"]) for m in members])
    return GroupSummary(spreads([r.scores for r in runs]), runs, curves.mean(axis=0).tolist(),
                        curves.tolist())


def unit_ids(table: pd.DataFrame) -> NDArray[np.int64]:
    """Resampling unit of each row: its subject, or the image itself where the subject is empty."""
    if "subject" in table.columns:
        subject = table["subject"]
        known = subject.notna() & (subject.astype(str).str.strip() != "")
        keys = np.where(known, "s:" + subject.astype(str), "i:" + table["path"].astype(str))
    else:
        keys = ("i:" + table["path"].astype(str)).to_numpy()
    return pd.factorize(pd.Series(keys))[0].astype(np.int64)


def paired_difference(
    errors_a: Floats, errors_b: Floats, units: NDArray[np.int64], resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, tuple[float, float], float]:
    """(MAE difference a − b, its 95 % interval, p-value) from absolute errors shaped (seeds, images) of
    the same images, grouped into resampling `units` (a unit id per image)."""
    rng = np.random.default_rng(seed)
    n_units = int(units.max()) + 1
    counts = np.bincount(units, minlength=n_units).astype(np.float64)

    def unit_sums(errors: Floats) -> Floats:  # (seeds, units): summed error of each unit's images
        return np.stack([np.bincount(units, weights=row, minlength=n_units) for row in errors])

    sums_a, sums_b = unit_sums(errors_a), unit_sums(errors_b)
    n_images = float(counts.sum())
    diff = float(sums_a.mean(axis=0).sum() - sums_b.mean(axis=0).sum()) / n_images
    draws = []
    block = max(1, _CHUNK // max(n_units, 1))
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        weights = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=size).astype(np.float64)
        total = weights @ counts

        def resampled_mae(sums: Floats, weights: Floats = weights, total: Floats = total,
                          size: int = size) -> Floats:
            n_seeds = sums.shape[0]
            picks = rng.integers(0, n_seeds, (size, n_seeds))
            seed_w = (picks[..., None] == np.arange(n_seeds)).sum(axis=1) / n_seeds
            return np.einsum("ru,ru->r", weights, seed_w @ sums) / total

        draws.append(resampled_mae(sums_a) - resampled_mae(sums_b))
    boot = np.concatenate(draws)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    unit_diff = sums_a.mean(axis=0) - sums_b.mean(axis=0)
    if not np.any(unit_diff):
        return diff, (lo, hi), 1.0
    test = permutation_test((unit_diff,), lambda x, axis: np.sum(x, axis=axis) / n_images,
                            permutation_type="samples", vectorized=True, n_resamples=resamples,
                            alternative="two-sided", batch=block, rng=rng)
    return diff, (lo, hi), float(test.pvalue)


def p_text(p: float) -> str:
    """`p = 0.003`, or `p < 0.001` below that."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(a: str, b: str, diff: float, ci: tuple[float, float], p: float) -> str:
    """One line: who beats whom by how much, or that no difference is detectable at this size."""
    p_line = p_text(p)
    lo, hi = ci
    if hi < 0:
        return f"{a} beats {b} by {-diff:.2f} y (95 % CI {-hi:.2f}–{-lo:.2f}, {p_line})"
    if lo > 0:
        return f"{b} beats {a} by {diff:.2f} y (95 % CI {lo:.2f}–{hi:.2f}, {p_line})"
    return (f"no difference detectable at this size ({a} − {b} = {diff:+.2f} y, 95 % CI {lo:.2f} to "
            f"{hi:.2f}, {p_line})")


def _errors_on(members: Sequence[Member], paths: pd.Index) -> Floats:
    rows = []
    for m in members:
        t = m.table.set_index(m.table["path"].astype(str))
        rows.append(abs_errors(t.loc[paths, "pred"], t.loc[paths, "age"]))
    return np.stack(rows)


def compare_pair(a: str, runs_a: Sequence[Member], b: str, runs_b: Sequence[Member],
                 resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> PairResult:
    """The pair's difference on the test images every run of both groups has, with interval and p."""
    members = [*runs_a, *runs_b]
    common = pd.Index(members[0].table["path"].astype(str))
    for m in members[1:]:
        common = common.intersection(pd.Index(m.table["path"].astype(str)), sort=False)
    if common.empty:
        raise FaceageError(f"{a} and {b} share no test image (runs {', '.join(m.run for m in members)}); "
                           "compare runs tested on the same manifest and folds.")
    ages = [m.table.set_index(m.table["path"].astype(str)).loc[common, "age"].to_numpy() for m in members]
    for m, age in zip(members[1:], ages[1:], strict=True):
        if not np.allclose(age, ages[0]):
            raise FaceageError(f"runs {members[0].run} and {m.run} give the same test images different "
                               "ages: they were tested on different labels; compare runs of one manifest.")
    first = members[0].table.set_index(members[0].table["path"].astype(str)).loc[common]
    units = unit_ids(first.reset_index(drop=True))
    diff, ci, p = paired_difference(_errors_on(runs_a, common), _errors_on(runs_b, common), units,
                                    resamples, seed)
    return PairResult(a, b, diff, ci, p, verdict(a, b, diff, ci, p), len(common), int(units.max()) + 1)


def compare_groups(groups: Mapping[str, Sequence[Member]], group_by: str = "loss",
                   resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """Summaries of each group and every pair of groups, in the order the groups are given."""
    if resamples < 100:
        raise FaceageError(f"--resamples {resamples}: use at least 100 (default {RESAMPLES}).")
    empty = [name for name, members in groups.items() if not members]
    if not groups or empty:
        raise FaceageError(f"nothing to compare: group(s) {', '.join(empty) or '(none)'} hold no run.")
    summaries = {name: summarize_group(members) for name, members in groups.items()}
    pairs = [compare_pair(a, groups[a], b, groups[b], resamples, seed)
             for a, b in itertools.combinations(groups, 2)]
    return Comparison(summaries, pairs, group_by, resamples, seed)


GROUP_KEYS = ("loss",)  # settings of a run's config.yaml that `faceage eval --group-by` groups by


def group_runs(tables: Sequence[Path], labels: Sequence[str], frames: Sequence[pd.DataFrame],
               key: str) -> dict[str, list[Member]]:
    """Inputs grouped by their run's config.yaml setting `key` (groups in order of first appearance);
    each input must be a run folder's predictions.csv with a config.yaml beside it."""
    if key not in GROUP_KEYS:
        raise FaceageError(f"--group-by {key}: choose one of {', '.join(GROUP_KEYS)}.")
    groups: dict[str, list[Member]] = {}
    for table, label, frame in zip(tables, labels, frames, strict=True):
        config = table.parent / RUN_CONFIG
        if table.name != PREDICTIONS_CSV or not config.is_file():
            raise FaceageError(f"{table}: --group-by {key} needs run folders (their {RUN_CONFIG} names the "
                               f"{key}); pass the run folder, not a bare predictions CSV.")
        settings = read_yaml_mapping(config, "run config")
        if settings.get(key) is None:
            raise FaceageError(f"{config}: has no '{key}' setting to group by; is it a faceage run?")
        seed = settings.get("seed")
        groups.setdefault(str(settings[key]), []).append(
            Member(label, seed if isinstance(seed, int) else None, frame))
    return groups
