"""The metric registry is the one list of metrics: one registered in a test shows up, with its value, in
every table, report and JSON object, so no renderer can be listing metrics by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table

from faceage.evaluate import registry
from faceage.evaluate.compare import Member, compare_groups
from faceage.evaluate.compare_report import comparison_markdown, comparison_tables
from faceage.evaluate.folds import fold_table, per_fold
from faceage.evaluate.formatting import md_table, num, pct
from faceage.evaluate.metrics import abs_errors
from faceage.evaluate.registry import Metric, Predictions, Scope
from faceage.evaluate.report import InputMetrics, console_table, markdown_report, metrics_json
from faceage.evaluate.summary import summarize

AGE = [20, 30, 40, 50]
PRED = [20, 35, 34, 60]  # errors 0, 5, 6, 10; fold 0 (0, 5) has the max error 5, fold 1 (6, 10) 10
FOLD = [0, 0, 1, 1]


def _max_error(p: Predictions) -> float:
    return float(abs_errors(p.pred, p.age).max())


def _register(monkeypatch: pytest.MonkeyPatch, scopes: frozenset[Scope] = registry.EVERYWHERE) -> None:
    extra = Metric("max_error", "max error", _max_error, digits=1, scopes=scopes,
                   note="max error is the largest |pred − age|.")
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, extra))


def _text(table: Table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def _input() -> InputMetrics:
    return InputMetrics("a", Path("a.csv"), summarize(AGE, PRED, fold=FOLD))


def _groups() -> dict[str, list[Member]]:
    def table(errors: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"path": [f"{i}.jpg" for i in range(4)], "age": 40.0,
                             "pred": 40.0 + np.asarray(errors), "subject": ""})

    # max errors: mv 3 and 5 (mean 4, std √2), l2 8
    return {"mv": [Member("mv-s0", 0, table([1, -3, 0, 2])), Member("mv-s1", 1, table([5, 0, 1, 0]))],
            "l2": [Member("l2-s0", 0, table([8, 1, 1, 1]))]}


def test_a_registered_metric_appears_in_the_eval_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    item = _input()
    assert item.metrics.scores["max_error"] == 10.0
    console = _text(console_table([item]))
    assert "max error" in console and "10.0" in console
    report = markdown_report([item], "cs.png")
    assert "`mean`. CS@5 is the share of faces" in report and "(ties count, tolerance 1e-09)." in report
    assert "not record it. max error is the largest |pred − age|.\n" in report  # the metric's note, last
    assert ("| input | n | MAE | MAE (mean) | CS@5 | ε-error | median baseline | max error | MAE per fold |"
            in report)
    assert "| a | 4 | 5.25 | — | 50.0 % | — | — | 10.0 | 5.25 ± 3.89 (2 folds) |" in report
    assert "| fold | n | MAE | CS@5 | median baseline | max error |" in report  # the per-fold table
    assert "| 0 | 2 | 2.50 | 100.0 % | — | 5.0 |" in report
    assert "| 1 | 2 | 8.00 | 0.0 % | — | 10.0 |" in report
    assert "| mean ± std |  | 5.25 ± 3.89 | 50.0 % ± 70.7 % | — | 7.5 ± 3.5 |" in report
    body = json.loads(metrics_json([item]))
    assert body["max_error"] == 10.0
    assert [f["max_error"] for f in body["per_fold"]] == [5.0, 10.0]
    assert body["fold_summary"]["max_error_mean"] == 7.5
    assert body["fold_summary"]["max_error_std"] == pytest.approx(5 / math.sqrt(2))


def test_a_registered_metric_appears_in_the_training_fold_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    text = _text(fold_table("test folds of runs/x", per_fold(PRED, AGE, FOLD)))
    assert "max error" in text and "7.5 ± 3.5" in text
    assert [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│ mean")] == [
        [" mean ± std ", "   ", " 5.25 ± 3.89 ", " 50.0 % ± 70.7 % ", "               — ", " 7.5 ± 3.5 "]]


def test_a_registered_metric_appears_in_the_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    comparison = compare_groups(_groups(), resamples=100)
    mv = comparison.to_dict()["losses"]["mv"]
    assert [r["max_error"] for r in mv["runs"]] == [3.0, 5.0]
    assert mv["max_error_mean"] == 4.0 and mv["max_error_std"] == pytest.approx(math.sqrt(2))
    text = comparison_markdown(comparison)
    assert "| loss | runs | MAE | CS@5 | ε-error | max error |" in text
    assert "| mv | 2 | 1.50 ± 0.00 | 100.0 % ± 0.0 % | — | 4.0 ± 1.4 |" in text
    assert "| l2 | 1 | 2.75 | 75.0 % | — | 8.0 |" in text
    assert "| mv | 1 | mv-s1 | 1.50 | 100.0 % | — | 5.0 |" in text  # the per-run table
    groups_table, _ = comparison_tables(comparison, "by loss")
    assert "4.0 ± 1.4" in _text(groups_table)


def test_a_metric_appears_only_where_its_scopes_say(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, frozenset({"fold"}))
    item = _input()
    assert "max_error" not in item.metrics.scores and "max error" not in _text(console_table([item]))
    assert [f.scores["max_error"] for f in item.metrics.per_fold or []] == [5.0, 10.0]
    assert "| fold | n | MAE | CS@5 | median baseline | max error |" in markdown_report([item], None)
    assert "max error" not in comparison_markdown(compare_groups(_groups(), resamples=100))


def test_shared_formatting() -> None:
    assert (num(None), num(math.nan), num(2.345, 1), pct(0.5), pct(None)) == ("—", "—", "2.3", "50.0 %", "—")
    assert md_table(["a", "b|c"], [["1", "2"]]) == ["| a | b\\|c |", "|---|---|", "| 1 | 2 |", ""]
    cs = registry.metric("cs5")
    assert cs.text(0.25) == "25.0 %" and cs.text_spread(registry.Spread(0.25, 0.05)) == "25.0 % ± 5.0 %"
    assert cs.text_spread(registry.Spread(None, None)) == "—"
