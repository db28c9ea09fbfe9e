"""The `eval` stage: read predictions tables, compute the metrics, write the plot, CSV, JSON and report.

Everything is computed before anything is written, and every output goes through `faceage.core.atomic` in one
batch: if any input is bad, no output file appears (and no existing one is touched).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from faceage.core.atomic import atomic_path
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.files import real_path
from faceage.core.layout import PREDICTIONS_CSV, RUNS_DIR
from faceage.core.lock import folder_lock
from faceage.core.outputs import check_output, check_sidecar, has_header
from faceage.core.schema import PREDICTIONS, read_table
from faceage.core.spreadsheet import escape_text
from faceage.evaluate.compare import RESAMPLES, Comparison, compare_groups, group_runs
from faceage.evaluate.compare_report import comparison_markdown
from faceage.evaluate.report import (
    PLOT_FORMATS,
    InputMetrics,
    coverage_plot,
    cs_plot,
    cs_table,
    is_faceage_plot,
    markdown_report,
    metrics_dict,
    metrics_json,
)
from faceage.evaluate.summary import Metrics, summarize

MAX_THETA_LIMIT = 200


@dataclass(frozen=True)
class EvalResult:
    """The metrics of each input (in the order given), the files written, and with `group_by` the
    comparison of the groups."""

    inputs: list[InputMetrics]
    written: list[Path]
    comparison: Comparison | None = None


def newest_run(runs_dir: Path = RUNS_DIR) -> Path:
    """The predictions.csv of the run folder under `runs_dir` whose predictions.csv was written last."""
    found = sorted(
        (p.stat().st_mtime_ns, p.parent.name, p)
        for p in (runs_dir.glob(f"*/{PREDICTIONS_CSV}") if runs_dir.is_dir() else [])
        if p.is_file()
    )
    if not found:
        raise FaceageError(
            f"{runs_dir.resolve()}: no run folder with a {PREDICTIONS_CSV} found. Pass a run folder or a "
            "predictions CSV to `faceage eval`, or train a model first (`faceage train`)."
        )
    return found[-1][2]


def resolve_input(path: Path) -> Path:
    """A run folder means its predictions.csv; a file is taken as given."""
    if path.is_dir():
        table = path / PREDICTIONS_CSV
        if not table.is_file():
            raise FaceageError(
                f"{path}: this folder has no {PREDICTIONS_CSV}; pass a run folder whose training finished, "
                "or the predictions CSV itself."
            )
        return table
    if not path.is_file():
        raise FaceageError(f"{path}: no such file or folder; pass a run folder or a predictions CSV.")
    return path


def input_labels(tables: list[Path]) -> list[str]:
    """Labels of curves and columns: a predictions.csv's run folder name, else the file stem; made unique."""
    labels: list[str] = []
    for table in tables:
        base = real_path(table).parent.name if table.name == PREDICTIONS_CSV else table.stem
        label, k = base, 2
        while label in labels or label == "theta":  # `theta` is the first column of cs.csv
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def table_metrics(df: pd.DataFrame, max_theta: int) -> Metrics:
    """Metrics of one validated predictions table, using whichever optional columns it has."""

    def optional(name: str) -> pd.Series | None:
        return df[name] if name in df.columns else None

    return summarize(
        df["age"], df["pred"], mean=optional("mean"), std=optional("std"), age_std=optional("age_std"),
        fold=optional("fold"), train_median=optional("train_median"), max_theta=max_theta,
    )


def _check_outputs(named: dict[str, Path | None], sidecars: dict[Path, str], tables: list[Path]) -> None:
    """The outputs the user named may replace files, never an input or another stage's table; the sidecars
    (the CS table beside the plot, the plot a report links) replace only earlier ones."""
    given = [p for p in (*named.values(), *sidecars) if p is not None]
    if len({real_path(p) for p in given}) != len(given):
        raise FaceageError(f"two outputs share a path ({', '.join(map(str, given))}); give each its own.")
    for flag, path in named.items():
        if path is not None:
            check_output(path, flag, inputs=tables)
    for path, beside in sidecars.items():
        ours = has_header("theta") if path.suffix == ".csv" else is_faceage_plot
        check_sidecar(path, beside, ours)


def evaluate(
    inputs: list[Path],
    curve: Path | None = None,
    report: Path | None = None,
    json_path: Path | None = None,
    max_theta: int = 20,
    runs_dir: Path = RUNS_DIR,
    group_by: str | None = None,
    resamples: int = RESAMPLES,
    coverage: Path | None = None,
) -> EvalResult:
    """Evaluate predictions tables (run folders or CSVs; none: the newest run under `runs_dir`).

    `curve` gets the CS plot and, beside it, `<curve stem>.csv` (theta + a column per input). A `report`
    without `curve` puts the plot at `cs.png` beside the report, which links to it relatively. `group_by`
    (`loss`) groups run folders by their config.yaml's setting and compares the groups
    (`faceage.evaluate.compare`): the report gains a section, metrics.json a `comparison` object.
    `coverage` gets the calibration picture (`coverage.png` beside a report unless given) of the inputs
    with a predicted std.
    """
    if not 1 <= max_theta <= MAX_THETA_LIMIT:
        raise FaceageError(f"--max-theta {max_theta}: choose a whole number of years, 1..{MAX_THETA_LIMIT}.")
    implicit_curve = report is not None and curve is None
    if report is not None and curve is None:
        curve = report.parent / "cs.png"
    implicit_coverage = report is not None and coverage is None
    if report is not None and coverage is None:
        coverage = report.parent / "coverage.png"
    for flag, plot in (("--curve", curve), ("--coverage", coverage)):
        if plot is not None and plot.suffix.lower() not in PLOT_FORMATS:
            raise FaceageError(f"{flag} {plot}: end the file name in one of {', '.join(PLOT_FORMATS)}.")
    tables = [resolve_input(p) for p in inputs] if inputs else [newest_run(runs_dir)]
    if not inputs:
        log.info("evaluating the newest run: %s", tables[0])
    curve_csv = curve.with_suffix(".csv") if curve is not None else None
    named = {"--curve": None if implicit_curve else curve, "--json": json_path, "--report": report,
             "--coverage": None if implicit_coverage else coverage}
    sidecars = {p: f"--report {report}" if implicit_curve else f"--curve {curve}"
                for p in ((curve, curve_csv) if implicit_curve else (curve_csv,)) if p is not None}
    if implicit_coverage and coverage is not None:
        sidecars[coverage] = f"--report {report}"
    _check_outputs(named, sidecars, tables)

    labels = input_labels(tables)
    frames = [read_table(table, PREDICTIONS) for table in tables]
    for table, frame in zip(tables, frames, strict=True):
        if "train_median" not in frame.columns:
            log.info("%s has no train_median column (written by an older faceage train, or not by train): "
                     "its median baseline is unknown", table)
    results = [
        InputMetrics(label, table, table_metrics(frame, max_theta))
        for label, table, frame in zip(labels, tables, frames, strict=True)
    ]
    comparison = (None if group_by is None else
                  compare_groups(group_runs(tables, labels, frames, group_by), group_by, resamples))
    contents: dict[Path, bytes] = {}
    with_std = [r for r in results if r.metrics.calibration is not None]
    if coverage is not None and not with_std and not implicit_coverage:
        raise FaceageError(f"--coverage {coverage}: no input has a predicted std (an l2 run writes zeros); "
                           f"drop --coverage or evaluate a mv/softmax run.")
    if coverage is not None and with_std:
        contents[coverage] = coverage_plot(with_std, fmt=coverage.suffix.lower().lstrip("."))
    if curve is not None and curve_csv is not None:
        contents[curve] = cs_plot(results, fmt=curve.suffix.lower().lstrip("."))
        contents[curve_csv] = cs_table(results).rename(columns=escape_text).to_csv(index=False).encode()
    if json_path is not None:
        contents[json_path] = (metrics_json(results) if comparison is None else json.dumps(
            {"inputs": [metrics_dict(i) for i in results], "comparison": comparison.to_dict()},
            indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    if report is not None and curve is not None:
        link = _link(curve, report)
        text = markdown_report(results, link, _link(coverage, report) if coverage in contents else None)
        if comparison is not None:
            text += "\n" + comparison_markdown(comparison)
        contents[report] = text.encode()
    _write_all(contents)
    return EvalResult(results, list(contents), comparison)


def _link(target: Path, report: Path) -> str:
    """`target` relative to the report's folder, percent-encoded (a Markdown link breaks at a space)."""
    return quote(Path(os.path.relpath(real_path(target), real_path(report).parent)).as_posix())


def _write_all(contents: dict[Path, bytes]) -> None:
    """Write every file to a temporary beside it, then rename them all, holding each output folder's lock
    (a folder align or train is writing is refused); a failure (an OutputError naming the file and the fix)
    leaves none behind."""
    with contextlib.ExitStack() as stack:
        for folder in sorted({real_path(target).parent for target in contents}):
            if folder.is_dir():  # a folder eval makes has no other writer
                stack.enter_context(folder_lock(folder, "an output folder of faceage eval"))
        for target, data in contents.items():
            stack.enter_context(atomic_path(target)).write_bytes(data)
