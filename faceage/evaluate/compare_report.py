"""A comparison (`compare.Comparison`) as a user reads it: Markdown section, console tables, mean CS plot.

Each function returns content and writes nothing, so the study and `faceage eval --group-by` can build
every output first and then write them all together.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from faceage.evaluate.compare import Comparison, GroupSummary, p_text
from faceage.evaluate.formatting import MISSING, md_table, rich_table
from faceage.evaluate.registry import scored_at
from faceage.evaluate.report import finish_plot, legend_label, new_axes

METHOD = (
    "Differences are a − b in test MAE (years) on the test images every run of both has, averaged over "
    "seeds. 95 % CI: hierarchical bootstrap ({resamples} draws, seed {seed}): subjects are drawn with "
    "replacement (an image without a subject is its own unit), and within each group its seeds are drawn "
    "with replacement. p: paired sign-flip permutation test (scipy.stats.permutation_test) on each unit's "
    "seed-averaged error difference. A pair is decided only when its CI excludes 0."
)


def group_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-group table: each "run" metric's mean ± sample std over seeds."""
    metrics = scored_at("run")
    header = [comparison.group_by, "runs", *(m.label for m in metrics)]
    rows = [[name, str(len(g.runs)), *(m.text_spread(g.spreads[m.key]) for m in metrics)]
            for name, g in comparison.groups.items()]
    return header, rows


def run_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-run table: each run's "run" metrics, group by group."""
    metrics = scored_at("run")
    header = [comparison.group_by, "seed", "run", *(m.label for m in metrics)]
    rows = [[name, MISSING if r.seed is None else str(r.seed), r.run,
             *(m.text(r.scores[m.key]) for m in metrics)]
            for name, g in comparison.groups.items() for r in g.runs]
    return header, rows


def pair_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-pair table: the MAE difference, its interval, p and the verdict."""
    header = ["a", "b", "MAE a − b", "95 % CI", "p", "verdict"]
    rows = [[p.a, p.b, f"{p.mae_diff:+.3f}", f"{p.ci95[0]:+.3f} … {p.ci95[1]:+.3f}",
             p_text(p.p_value).removeprefix("p = ").removeprefix("p "),
             p.verdict] for p in comparison.pairs]
    return header, rows


def comparison_tables(comparison: Comparison, title: str) -> list[Table]:
    """The per-group and per-pair tables for the console."""
    pairs_header, pairs = pair_rows(comparison)
    return [rich_table(title, *group_rows(comparison)),
            rich_table("pairs", pairs_header, pairs, text_columns=(0, 1, len(pairs_header) - 1))]


def comparison_markdown(comparison: Comparison, level: int = 2) -> str:
    """A Markdown section: per-group summary, per-run scores, the pairs with their verdicts, the method."""
    h = "#" * level
    out = [f"{h} Comparison by {comparison.group_by}", ""]
    out += md_table(*group_rows(comparison))
    out += ["Mean ± sample std (ddof = 1) over the runs (seeds) of each group.", ""]
    out += [f"{h}# Runs", ""]
    out += md_table(*run_rows(comparison))
    if comparison.pairs:
        out += [f"{h}# Pairs", ""]
        out += [f"- {p.verdict} ({p.n_images} images, {p.n_units} units)" for p in comparison.pairs] + [""]
        out += md_table(*pair_rows(comparison))
    out += [METHOD.format(resamples=comparison.resamples, seed=comparison.seed), ""]
    return "\n".join(out)


def mean_cs_plot(groups: dict[str, GroupSummary]) -> bytes:
    """PNG: one CS curve per group, the mean over its runs, in a band from the lowest to the highest run."""
    fig, ax = new_axes()
    n_theta = 0
    for name, g in groups.items():
        curve = 100 * np.asarray(g.cs_curve)
        n_theta = len(curve)
        (line,) = ax.plot(range(n_theta), curve, marker="o", markersize=3, clip_on=False,
                          label=f"{legend_label(name)} (mean of {len(g.runs)})")
        if len(g.cs_runs) > 1:
            runs = 100 * np.asarray(g.cs_runs)
            ax.fill_between(range(n_theta), runs.min(axis=0), runs.max(axis=0), color=line.get_color(),
                            alpha=0.15, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish_plot(fig, ax, "Cumulative score, mean over seeds (band: lowest to highest seed)",
                       "Error level θ (years)", "Cumulative score (%)", max(n_theta - 1, 1))

