"""`faceage eval`: metrics, report and plots of predictions tables (faceage.evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceage.core.console import console


def eval_command(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Run folders (their predictions.csv) or predictions CSVs; default: the newest run under runs/.",
        show_default=False,
    )] = None,
    curve: Annotated[Path | None, typer.Option(
        "--curve", help="CS plot (.png, .svg or .pdf); cs.csv (θ + a column per input) is written beside it.",
    )] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Markdown report; links the plots (cs.png and coverage.png beside it unless "
                         "--curve / --coverage are given).",
    )] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Metrics as JSON.")] = None,
    coverage: Annotated[Path | None, typer.Option(
        "--coverage", help="Calibration plot (.png, .svg or .pdf): share of faces within k predicted stds "
                           "of their age against a Gaussian's, k = 0.25 … 3.",
    )] = None,
    max_theta: Annotated[int, typer.Option(
        "--max-theta", help="Largest error level θ (years) of the CS curve.",
    )] = 20,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Group run folders by this config.yaml setting (loss) and compare the groups: "
                           "mean ± std over seeds, MAE difference of each pair with its 95 % CI and p.",
    )] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", help="Bootstrap draws and permutation-test sign flips of --group-by.")] = 2000,
) -> None:
    """MAE, cumulative score CS(θ), ε-error, per-fold and per-age-group tables of predictions tables."""
    from faceage.evaluate.compare_report import comparison_tables
    from faceage.evaluate.report import console_table
    from faceage.evaluate.run import evaluate

    result = evaluate(inputs or [], curve=curve, report=report, json_path=json_path, max_theta=max_theta,
                      group_by=group_by, resamples=resamples, coverage=coverage)
    console.print(console_table(result.inputs))
    if result.comparison is not None:
        for table in comparison_tables(result.comparison, f"by {result.comparison.group_by}"):
            console.print(table)
    for path in result.written:
        console.print(f"wrote {escape(str(path))}", highlight=False)
