"""`faceage eval` end to end: outputs, the default run, several inputs, and bad input that writes nothing."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from faceage.cli import main
from faceage.core.console import console
from faceage.core.errors import FaceageError

HEADER = ["path", "age", "age_std", "subject", "fold", "pred", "mean", "std"]
ROWS = [  # errors of pred: 0, 5, 6, 10; row b has a crowd std of 0
    ["a.jpg", "20", "2", "s1", "0", "20", "20.4", "1"],
    ["b.jpg", "30", "0", "s2", "0", "35", "34.6", "2"],
    ["c.jpg", "40", "5", "s3", "1", "34", "34.2", "3"],
    ["d.jpg", "50", "5", "s4", "1", "60", "59.5", "4"],
]


def _write(path: Path, rows: list[list[str]] = ROWS, header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def _run(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run the console script's entry point; return its exit code and what it printed (unwrapped)."""
    monkeypatch.setattr(sys, "argv", ["faceage", "eval", *args])
    monkeypatch.setattr(console, "soft_wrap", True)
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out + captured.err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_end_to_end_on_a_run_folder(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _write(workdir / "runs" / "mv" / "predictions.csv")
    args = ["runs/mv", "--curve", "out/cs.png", "--report", "out/report.md", "--json", "out/metrics.json"]
    code, out = _run(args, monkeypatch, capsys)
    assert code == 0, out
    assert "5.25" in out and "50.0 %" in out  # the console table
    m = json.loads((workdir / "out" / "metrics.json").read_text())
    assert m["label"] == "mv" and m["n"] == 4 and m["mae"] == 5.25
    assert m["mae_unrounded"] == pytest.approx((0.4 + 4.6 + 5.8 + 9.5) / 4)
    assert m["cs"]["4"] == 0.25 and m["cs"]["5"] == 0.5 and m["cs"]["10"] == 1.0
    # ε: 0 (exact), 1 (σ = 0, missed by 5), 1 − exp(−36/50), 1 − exp(−100/50)
    assert m["epsilon_error"] == pytest.approx((0 + 1 + (1 - math.exp(-0.72)) + (1 - math.exp(-2))) / 4)
    assert m["epsilon_sigma_zero"] == 1
    assert [(f["fold"], f["mae"], f["cs5"]) for f in m["per_fold"]] == [(0, 2.5, 1.0), (1, 8.0, 0.0)]
    assert m["fold_summary"]["mae_std"] == pytest.approx(5.5 / math.sqrt(2))
    u = m["uncertainty"]
    assert (u["center"], u["within_1std"], u["within_2std"]) == ("mean", 0.25, 0.5)
    assert len(u["shares"]) == 12 and (u["shares"][3], u["shares"][7]) == (0.25, 0.5)  # k = 0.25 … 3
    assert u["shares"] == sorted(u["shares"])  # a share can only grow with k
    cs = pd.read_csv(workdir / "out" / "cs.csv")
    assert cs.columns.tolist() == ["theta", "mv"] and cs["mv"].iloc[5] == 0.5
    with Image.open(workdir / "out" / "cs.png") as img:
        assert img.format == "PNG" and img.size[0] > 0
    assert "![Cumulative score](cs.png)" in (workdir / "out" / "report.md").read_text()
    assert "![Coverage](coverage.png)" in (workdir / "out" / "report.md").read_text()
    with Image.open(workdir / "out" / "coverage.png") as img:  # beside the report, as cs.png would be
        assert img.format == "PNG" and img.info.get("Software") == "faceage eval"


def test_default_input_is_the_newest_run(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    old = _write(workdir / "runs" / "old" / "predictions.csv")
    new = _write(workdir / "runs" / "new" / "predictions.csv", [[*r[:5], r[1], *r[6:]] for r in ROWS])
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_000_100, 1_700_000_100))
    (workdir / "runs" / "unfinished").mkdir()  # newest folder, but no predictions yet
    code, out = _run(["--json", "m.json"], monkeypatch, capsys)
    assert code == 0, out
    m = json.loads((workdir / "m.json").read_text())
    assert m["label"] == "new" and m["mae"] == 0.0


def test_no_run_and_no_input_is_a_clear_error(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, out = _run(["--json", "m.json"], monkeypatch, capsys)
    assert code == 2 and "no run folder with a predictions.csv" in out and "faceage train" in out
    assert not (workdir / "m.json").exists()


def test_several_inputs_share_one_plot(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _write(workdir / "a" / "preds.csv")
    _write(workdir / "b" / "preds.csv", [[*r[:5], r[1], *r[6:]] for r in ROWS])
    _write(workdir / "runs" / "mv" / "predictions.csv")
    code, out = _run(["a/preds.csv", "b/preds.csv", "runs/mv/predictions.csv", "--curve", "cs.svg",
                      "--json", "m.json"], monkeypatch, capsys)
    assert code == 0, out
    cs = pd.read_csv(workdir / "cs.csv")
    assert cs.columns.tolist() == ["theta", "preds", "preds-2", "mv"]
    assert cs["preds-2"].tolist() == [1.0] * 21
    inputs = json.loads((workdir / "m.json").read_text())["inputs"]
    assert [i["label"] for i in inputs] == ["preds", "preds-2", "mv"]
    svg = (workdir / "cs.svg").read_text()
    assert all(label in svg for label in ("preds-2", "mv"))


def _drop(column: str) -> tuple[list[list[str]], list[str]]:
    i = HEADER.index(column)
    return [r[:i] + r[i + 1:] for r in ROWS], HEADER[:i] + HEADER[i + 1:]


def _set(row: int, column: str, value: str) -> tuple[list[list[str]], list[str]]:
    rows = [list(r) for r in ROWS]
    rows[row][HEADER.index(column)] = value
    return rows, HEADER


BAD = {
    "missing column": (_drop("pred"), "missing column(s) ['pred']"),
    "NaN age": (_set(2, "age", ""), "row 4, column 'age': missing (NaN) value"),
    "nan text": (_set(1, "pred", "nan"), "row 3, column 'pred': 'nan' is not a number"),
    "negative age": (_set(1, "age", "-3"), "row 3, column 'age': -3 is outside"),
    "negative std": (_set(3, "std", "-1"), "row 5, column 'std': -1 is outside"),
    "negative age_std": (_set(0, "age_std", "-0.5"), "row 2, column 'age_std': -0.5 is outside"),
    "non-numeric pred": (_set(0, "pred", "abc"), "row 2, column 'pred': 'abc' is not a number"),
    "non-numeric age_std": (_set(3, "age_std", "x"), "row 5, column 'age_std': 'x' is not a number"),
    "NaN in present optional std": (_set(1, "std", ""), "row 3, column 'std': missing (NaN) value"),
    "empty table": (([], HEADER), "has no rows"),
    "duplicate paths": (_set(1, "path", "a.jpg"), "row 3, column 'path': duplicate value 'a.jpg'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_file_row_column_and_writes_nothing(
    case: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    (rows, header), expected = BAD[case]
    _write(workdir / "runs" / "good" / "predictions.csv")
    _write(workdir / "runs" / "bad" / "predictions.csv", rows, header)
    out_dir = workdir / "out"
    out_dir.mkdir()
    (out_dir / "metrics.json").write_text("old")
    code, out = _run(["runs/good", "runs/bad", "--curve", "out/cs.png", "--report", "out/report.md",
                      "--json", "out/metrics.json"], monkeypatch, capsys)
    assert code == 2
    assert "runs/bad/predictions.csv" in out and expected in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.json"]  # no new file, no temporary
    assert (out_dir / "metrics.json").read_text() == "old"


def test_zero_byte_file_is_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (workdir / "p.csv").write_bytes(b"")
    code, out = _run(["p.csv", "--json", "m.json"], monkeypatch, capsys)
    assert code == 2 and "p.csv: the file is empty" in out and not (workdir / "m.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runs/mv", "--curve", "cs.txt"], "--curve cs.txt: end the file name in one of .png"),
        (["runs/mv", "--json", "runs/mv/predictions.csv"], "is an input of the command"),
        (["runs/mv", "--curve", "x.png", "--json", "x.csv"], "two outputs share a path"),
        (["runs/mv", "--max-theta", "0"], "--max-theta 0: choose a whole number"),
        (["nowhere.csv"], "nowhere.csv: no such file or folder"),
        (["runs"], "runs: this folder has no predictions.csv"),
    ],
)
def test_bad_options_are_refused(
    args: list[str], expected: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    table = _write(workdir / "runs" / "mv" / "predictions.csv")
    before = table.read_bytes()
    code, out = _run(args, monkeypatch, capsys)
    assert code == 2 and expected in out
    assert table.read_bytes() == before
    assert sorted(p.name for p in workdir.iterdir()) == ["runs"]


def test_a_failed_write_leaves_no_output_behind(tmp_path: Path) -> None:
    from faceage.evaluate.run import evaluate

    table = _write(tmp_path / "runs" / "mv" / "predictions.csv")
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    with pytest.raises(FaceageError, match=r"blocker/m\.json: cannot write it .*a file stands where"):
        evaluate([table], curve=tmp_path / "out" / "cs.png", json_path=tmp_path / "blocker" / "m.json")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # the plot and cs.csv were not renamed


def test_report_links_the_plot_relative_to_itself(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _write(workdir / "runs" / "mv" / "predictions.csv")
    code, out = _run(["runs/mv", "--report", "rep/report.md"], monkeypatch, capsys)
    assert code == 0, out
    written = sorted(p.name for p in (workdir / "rep").iterdir() if p.name != ".faceage.lock")  # the lock
    assert written == ["coverage.png", "cs.csv", "cs.png", "report.md"]
    assert "![Cumulative score](cs.png)" in (workdir / "rep" / "report.md").read_text()
    code, out = _run(["runs/mv", "--report", "rep/report.md", "--curve", "plots/cs.png"], monkeypatch, capsys)
    assert code == 0, out
    assert "![Cumulative score](../plots/cs.png)" in (workdir / "rep" / "report.md").read_text()
    code, out = _run(["runs/mv", "--report", "rep/report.md", "--curve", "my plots/cs ü.png"], monkeypatch,
                     capsys)
    assert code == 0, out
    assert "![Cumulative score](../my%20plots/cs%20%C3%BC.png)" in (workdir / "rep" / "report.md").read_text()
