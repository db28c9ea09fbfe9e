"""Rendering: the CS plot is a real image, cs.csv has a column per input, JSON is strict, report.md too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console

from faceage.evaluate.report import (
    InputMetrics,
    console_table,
    cs_plot,
    cs_table,
    markdown_report,
    metrics_json,
)
from faceage.evaluate.summary import summarize

AGE = [20, 30, 40, 50]


def _item(label: str, pred: list[float], **optional: list[float]) -> InputMetrics:
    return InputMetrics(label, Path(f"{label}.csv"), summarize(AGE, pred, **optional))


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_cs_table_has_theta_and_a_column_per_input() -> None:
    table = cs_table([_item("a", [20, 35, 34, 60]), _item("b", [20, 30, 40, 50])])
    assert table.columns.tolist() == ["theta", "a", "b"]
    assert table["theta"].tolist() == list(range(21))
    assert table.loc[5, "a"] == 0.5 and table["b"].tolist() == [1.0] * 21


def test_cs_plot_is_a_readable_png_and_svg() -> None:
    items = [_item("a", [20, 35, 34, 60]), _item("b", [21, 30, 40, 52])]
    png = cs_plot(items)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (640, 480)
    pixels = mpimg.imread(io.BytesIO(png))
    assert pixels.shape[:2] == (480, 640) and np.ptp(pixels[..., :3]) > 0.5  # drawn, not blank
    svg = cs_plot([*items, _item("_scratch", [20, 30, 40, 50])], fmt="svg").decode()
    assert "<svg" in svg and "Cumulative score (%)" in svg and "Error level θ (years)" in svg
    assert "_scratch" in svg  # matplotlib would drop a legend label starting with "_"


def test_json_single_input_is_strict_and_complete() -> None:
    one = _strict(metrics_json([_item("a", [20, 35, 34, 60], fold=[0, 0, 0, 0])]))
    assert one["label"] == "a" and one["n"] == 4 and one["mae"] == 5.25
    assert one["mae_unrounded"] is None and one["epsilon_error"] is None and one["uncertainty"] is None
    assert list(one["cs"]) == [str(t) for t in range(21)] and one["cs"]["5"] == 0.5
    assert one["per_fold"] == [{"fold": 0, "n": 4, "mae": 5.25, "cs5": 0.5, "median_mae": None}]
    assert one["fold_summary"]["mae_std"] is None  # one fold: no spread
    assert [g["group"] for g in one["per_group"]] == ["0–19", "20–39", "40–59", "60–79", "80+"]
    assert one["per_group"][4] == {"group": "80+", "lo": 80, "hi": None, "n": 0, "mae": None, "bias": None}


def test_json_several_inputs_is_a_list_in_order() -> None:
    both = _strict(metrics_json([
        _item("a", [20, 35, 34, 60], age_std=[0, 5, 5, 5]),
        _item("b", [20, 30, 40, 50], mean=[20.5, 30, 40, 50], std=[1, 1, 1, 1]),
    ]))
    assert [i["label"] for i in both["inputs"]] == ["a", "b"]
    assert both["inputs"][0]["epsilon_sigma_zero"] == 1 and both["inputs"][0]["epsilon_n"] == 4
    u = both["inputs"][1]["uncertainty"]
    assert (u["center"], u["within_1std"], u["within_2std"]) == ("mean", 1.0, 1.0)
    assert u["shares"][3:] == [1.0] * 9  # within 1 std or more: every face


def test_markdown_report_links_the_plot_and_has_the_tables() -> None:
    items = [
        _item("mv", [20, 35, 34, 60], mean=[20.2, 35, 34, 60], std=[1, 2, 3, 4], age_std=[0, 5, 5, 5],
              fold=[0, 0, 1, 1]),
        _item("peer", [22, 30, 40, 50]),
    ]
    text = markdown_report(items, "plots/cs.png")
    assert "![Cumulative score](plots/cs.png)" in text
    assert "| mv | 4 | 5.25 | 5.30 | 50.0 % |" in text
    assert "| peer | 4 | 0.50 | — | 100.0 % | — | — |" in text
    assert "| 5 | 50.0 % | 100.0 % |" in text  # CS(θ) table, one column per input
    assert "## mv" in text and "## peer" in text and "### Per fold" in text
    assert "1 had σ = 0" in text and "### Is the predicted uncertainty honest?" in text
    assert "| 80+ | 0 | — | — |" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in table_lines)


def test_console_table_shows_the_headline_numbers() -> None:
    console = Console(record=True, width=120)
    console.print(console_table([_item("a", [20, 35, 34, 60])]))
    out = console.export_text()
    assert "5.25" in out and "50.0 %" in out and "a" in out


def test_cs_table_round_trips_through_csv(tmp_path: Path) -> None:
    table = cs_table([_item("a", [20, 35, 34, 60])])
    table.to_csv(tmp_path / "cs.csv", index=False)
    back = pd.read_csv(tmp_path / "cs.csv")
    assert back.columns.tolist() == ["theta", "a"] and back["a"].iloc[10] == 1.0
