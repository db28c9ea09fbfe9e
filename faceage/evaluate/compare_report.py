"""A comparison (`compare.Comparison`) as a user reads it: Markdown section, console tables, mean CS plot.

Each function returns content and writes nothing, so the study and `faceage eval --group-by` can build
every output first and then write them all together.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from faceage.evaluate.compare import Comparison, GroupSummary, p_text
from faceage.evaluate.metrics import CS_REPORT_THETA
from faceage.evaluate.report import finish_plot, legend_label, new_axes

METHOD = (
    "Differences are a − b in test MAE (years) on the test images every run of both has, averaged over "
    "seeds. 95 % CI: hierarchical bootstrap ({resamples} draws, seed {seed}): subjects are drawn with "
    "replacement (an image without a subject is its own unit), and within each group its seeds are drawn "
    "with replacement. p: paired sign-flip permutation test (scipy.stats.permutation_test) on each unit's "
    "seed-averaged error difference. A pair is decided only when its CI excludes 0."
)


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(mean: float | None, std: float | None, digits: int = 2, scale: float = 1.0) -> str:
    if mean is None:
        return "—"
    text = _num(scale * mean, digits)
    return text if std is None else f"{text} ± {_num(scale * std, digits)}"


def group_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-group table (mean ± sample std over seeds)."""
    header = [comparison.group_by, "runs", "MAE", f"CS@{CS_REPORT_THETA} (%)", "ε-error"]
    rows = [[name, str(len(g.runs)), _pm(g.mae_mean, g.mae_std), _pm(g.cs5_mean, g.cs5_std, 1, 100.0),
             _pm(g.eps_mean, g.eps_std, 4)] for name, g in comparison.groups.items()]
    return header, rows


def pair_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["a", "b", "MAE a − b", "95 % CI", "p", "verdict"]
    rows = [[p.a, p.b, f"{p.mae_diff:+.3f}", f"{p.ci95[0]:+.3f} … {p.ci95[1]:+.3f}",
             p_text(p.p_value).removeprefix("p = ").removeprefix("p "),
             p.verdict] for p in comparison.pairs]
    return header, rows


def comparison_tables(comparison: Comparison, title: str) -> list[Table]:
    """The per-group and per-pair tables for the console."""
    tables = []
    for (header, rows), name in ((group_rows(comparison), title), (pair_rows(comparison), "pairs")):
        table = Table(title=name)
        for i, column in enumerate(header):
            table.add_column(column, justify="left" if i in (0, 1, len(header) - 1) else "right",
                             overflow="fold")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows), ""]


def comparison_markdown(comparison: Comparison, level: int = 2) -> str:
    """A Markdown section: per-group summary, per-run scores, the pairs with their verdicts, the method."""
    h = "#" * level
    out = [f"{h} Comparison by {comparison.group_by}", ""]
    out += _md_table(*group_rows(comparison))
    out += ["Mean ± sample std (ddof = 1) over the runs (seeds) of each group.", ""]
    out += [f"{h}# Runs", ""]
    out += _md_table(
        [comparison.group_by, "seed", "run", "MAE", f"CS@{CS_REPORT_THETA} (%)", "ε-error"],
        [[name, "—" if r.seed is None else str(r.seed), r.run, _num(r.mae, 3), _num(100 * r.cs5, 1),
          _num(r.eps, 4)] for name, g in comparison.groups.items() for r in g.runs],
    )
    if comparison.pairs:
        out += [f"{h}# Pairs", ""]
        out += [f"- {p.verdict} ({p.n_images} images, {p.n_units} units)" for p in comparison.pairs] + [""]
        out += _md_table(*pair_rows(comparison))
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

