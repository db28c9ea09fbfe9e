"""Turn computed metrics into what a user reads: CS plot and CSV, report.md, metrics.json, a console table.

Every function here returns content (bytes, text, a table) and writes nothing, so `evaluate` can build all
outputs first and only then write them, each atomically. No torch; matplotlib through its Agg canvas only
(no pyplot, so no global backend state).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from rich.table import Table

from faceage.evaluate.folds import fold_rows
from faceage.evaluate.formatting import MISSING, md_table, num, one_line, pct, rich_table
from faceage.evaluate.metrics import COVERAGE_MULTIPLES, GroupStats, gaussian_share
from faceage.evaluate.registry import PRIMARY, metric, scored_at, spread_fields
from faceage.evaluate.summary import Metrics

PLOT_FORMATS = (".png", ".svg", ".pdf")
PLOT_CREATOR = "faceage eval"  # stamped into every plot, so a later report knows it may replace it
PLOT_MARK = {"png": "Software", "svg": "Creator", "pdf": "Creator"}


@dataclass(frozen=True)
class InputMetrics:
    """The metrics of one input table, with the label its curve and columns carry."""

    label: str
    source: Path
    metrics: Metrics


def cs_table(inputs: list[InputMetrics]) -> pd.DataFrame:
    """Columns `theta` (0..max θ) and one column per input label holding CS(θ) as a fraction."""
    n_theta = len(inputs[0].metrics.cs)
    table = pd.DataFrame({"theta": range(n_theta)})
    for item in inputs:
        table[item.label] = item.metrics.cs
    return table


def new_axes() -> tuple[Figure, Axes]:
    """A figure of faceage's plot size on the Agg canvas (no pyplot state) and its one axes."""
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def legend_label(label: str) -> str:
    """`label` for a legend: matplotlib hides entries starting with "_"; a leading space keeps them."""
    return f" {label}" if label.startswith("_") else label


def finish_plot(fig: Figure, ax: Axes, title: str, xlabel: str, ylabel: str, xmax: float,
                fmt: str = "png") -> bytes:
    """Labels, 0..xmax × 0..100 % axes, grid and legend, saved as `fmt` with faceage's creator mark (so a
    later report may replace the file)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={PLOT_MARK[fmt]: PLOT_CREATOR})
    return buf.getvalue()


def cs_plot(inputs: list[InputMetrics], fmt: str = "png") -> bytes:
    """One cumulative-score curve per input (as the paper's Figure 4): θ in years on x, % on y."""
    fig, ax = new_axes()
    for item in inputs:
        cs = item.metrics.cs
        ax.plot(range(len(cs)), 100 * cs, marker="o", markersize=3, label=legend_label(item.label),
                clip_on=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish_plot(fig, ax, "Cumulative score: share of faces with |error| ≤ θ", "Error level θ (years)",
                       "Cumulative score (%)", len(inputs[0].metrics.cs) - 1, fmt)


def coverage_plot(inputs: list[InputMetrics], fmt: str = "png") -> bytes:
    """Observed share of faces within k predicted stds of their age against a Gaussian's, k = 0.25 … 3:
    an honest uncertainty follows the Gaussian's curve; below it, the stds are too small."""
    fig, ax = new_axes()
    ks = COVERAGE_MULTIPLES
    ax.plot(ks, [100 * gaussian_share(k) for k in ks], color="black", linestyle="--", label="Gaussian")
    for item in inputs:
        if item.metrics.calibration is not None:
            ax.plot(ks, [100 * v for v in item.metrics.calibration.shares], marker="o", markersize=3,
                    label=legend_label(item.label))
    return finish_plot(fig, ax, "Is the uncertainty honest? Observed share against a Gaussian's",
                       "Predicted std multiple k", "Faces with |mean − age| ≤ k·std (%)", ks[-1], fmt)


def is_faceage_plot(path: Path) -> bool:
    """Whether `path` is a PNG that `cs_plot` made (its Software text), so a report may replace it."""
    try:
        with Image.open(path) as image:
            return image.info.get(PLOT_MARK["png"]) == PLOT_CREATOR
    except (OSError, ValueError):
        return False


def _clean(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python numbers, so the JSON is strict."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _group_dict(g: GroupStats) -> dict[str, Any]:
    shares = {} if g.within_1std is None else {"within_1std": g.within_1std, "within_2std": g.within_2std}
    return {"group": g.label, "lo": g.lo, "hi": g.hi if math.isfinite(g.hi) else None,
            "n": g.n, "mae": g.mae, "bias": g.bias, **shares}


def metrics_dict(item: InputMetrics) -> dict[str, Any]:
    """The JSON object of one input (keys documented in the README, "metrics.json")."""
    m = item.metrics
    return _clean({
        "label": item.label,
        "source": str(item.source),
        "n": m.n,
        **{k.json_name or k.key: m.scores[k.key] for k in scored_at("input")},
        "cs": {str(theta): float(v) for theta, v in enumerate(m.cs)},
        "epsilon_n": m.epsilon.n,
        "epsilon_sigma_zero": m.epsilon.n_sigma_zero,
        "per_fold": ([{"fold": f.fold, "n": f.n, **f.scores} for f in m.per_fold]
                     if m.per_fold is not None else None),
        "fold_summary": ({"n_folds": m.fold_summary.n_folds, **spread_fields(m.fold_summary.spreads)}
                         if m.fold_summary is not None else None),
        "per_group": [_group_dict(g) for g in m.per_group],
        "per_decade": [_group_dict(g) for g in m.per_decade],
        "uncertainty": asdict(m.calibration) if m.calibration is not None else None,
    })


def metrics_json(inputs: list[InputMetrics]) -> str:
    """One input: its object. Several: {"inputs": [object, …]} in the order given."""
    body: dict[str, Any] = (
        metrics_dict(inputs[0]) if len(inputs) == 1 else {"inputs": [metrics_dict(i) for i in inputs]}
    )
    return json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _folds_text(m: Metrics) -> str:
    """The primary metric's mean ± std across folds, and over how many folds."""
    s = m.fold_summary
    if s is None:
        return MISSING
    folds = " (1 fold)" if s.n_folds == 1 else f" ({s.n_folds} folds)"
    return metric(PRIMARY).text_spread(s.spreads[PRIMARY]) + folds


def headline_rows(inputs: list[InputMetrics]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table shared by the console and report.md: each registered
    metric, then the primary one's spread across folds."""
    metrics = scored_at("input")
    header = ["input", "n", *(m.label for m in metrics), f"{metric(PRIMARY).label} per fold"]
    rows = [[i.label, str(i.metrics.n), *(m.text(i.metrics.scores[m.key]) for m in metrics),
             _folds_text(i.metrics)] for i in inputs]
    return header, rows


def console_table(inputs: list[InputMetrics]) -> Table:
    """The headline numbers as a rich table."""
    return rich_table("faceage eval", *headline_rows(inputs))


def _group_rows(groups: list[GroupStats], shares: bool = False) -> list[list[str]]:
    return [[g.label, str(g.n), num(g.mae), num(g.bias),
             *([pct(g.within_1std), pct(g.within_2std)] if shares else [])] for g in groups]


def _input_section(item: InputMetrics) -> list[str]:
    m = item.metrics
    out = [f"## {one_line(item.label)}", "", f"Source: `{one_line(str(item.source))}` ({m.n} faces)", ""]
    if m.epsilon.value is not None:
        out += [
            f"ε-error {metric('eps').text(m.epsilon.value)} over {m.epsilon.n} faces with a crowd std; "
            f"{m.epsilon.n_sigma_zero} had σ = 0 and score 0 if the prediction equals the crowd mean "
            "exactly, else 1 (the σ → 0 limit).",
            "",
        ]
    if m.per_fold:
        out += ["### Per fold", ""]
        out += md_table(*fold_rows(m.per_fold))
        out += ["Std across folds is the sample std (ddof = 1); each fold counts once.", ""]
    out += ["### Per age group (true age; bias = mean of pred − age)", ""]
    shares = m.calibration is not None  # then: is the uncertainty honest at every age?
    out += md_table(["age", "n", "MAE", "bias", *(["within 1 std", "within 2 std"] if shares else [])],
                    _group_rows(m.per_group, shares))
    out += ["### Per decade", ""]
    out += md_table(["age", "n", "MAE", "bias"], _group_rows(m.per_decade))
    if m.calibration is not None:
        c = m.calibration
        out += ["### Is the predicted uncertainty honest?", ""]
        out += md_table(
            ["|" + c.center + " − age| within", "share", "Gaussian"],
            [["1 std", pct(c.within_1std), "68.3 %"], ["2 std", pct(c.within_2std), "95.4 %"]],
        )
    return out


def markdown_report(inputs: list[InputMetrics], plot_link: str | None,
                    coverage_link: str | None = None) -> str:
    """report.md: comparison table, the CS plot (relative link), CS(θ) table, the coverage plot (when
    written), then one section per input."""
    header, rows = headline_rows(inputs)
    out = ["# Age estimation report", ""]
    out += [" ".join(m.note for m in scored_at("input") if m.note), ""]
    out += md_table(header, rows)
    if plot_link is not None:
        out += [f"![Cumulative score]({plot_link})", ""]
    table = cs_table(inputs)
    out += ["## Cumulative score CS(θ)", ""]
    out += md_table(
        ["θ (years)", *(i.label for i in inputs)],
        [[str(int(r["theta"])), *(pct(float(r[i.label])) for i in inputs)] for _, r in table.iterrows()],
    )
    if coverage_link is not None:
        out += ["## Is the predicted uncertainty honest?", "",
                "Share of faces whose |mean − age| is within k predicted stds, against a Gaussian's.", "",
                f"![Coverage]({coverage_link})", ""]
    for item in inputs:
        out += _input_section(item)
    return "\n".join(out).rstrip("\n") + "\n"
