"""The command line's shape: command order, the one error map of `main`, and options declared once."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from helpers import Capsys, run_main

from faceage.align.run import AlignInterruptedError, AlignSummary
from faceage.align.settings import AlignSettings
from faceage.cli import app, main
from faceage.core.errors import FaceageError, StageInterruptedError


def _raise(error: BaseException) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def _recorder(seen: list[Any], argument: str) -> Any:
    """A stand-in for a library call: records its `argument`, then stops the command with a user error."""
    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get(argument, args[2] if len(args) > 2 else None))
        raise FaceageError("recorded")

    return record


def _params(command: str) -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


def test_help_lists_the_commands_in_stage_order() -> None:
    group: Any = typer.main.get_command(app)
    assert list(group.commands) == [
        "align", "manifest", "train", "eval", "study", "predict", "export", "doctor", "demo"]


def test_every_interruption_is_a_stage_interruption() -> None:
    from faceage.study import StudyInterruptedError
    from faceage.train.fold import RunInterruptedError

    for kind in (AlignInterruptedError, RunInterruptedError, StudyInterruptedError):
        assert issubclass(kind, StageInterruptedError) and issubclass(kind, FaceageError), kind


def test_align_interruption_prints_its_summary_and_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    summary = AlignSummary(tmp_path / "out" / "faces.csv", counts={"ok": 3}, processed=3, interrupted=True)
    monkeypatch.setattr("faceage.align.run.align_folder", _raise(AlignInterruptedError(summary)))
    code, text = run_main(["align", str(tmp_path), str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 130, text
    assert "(interrupted)" in text  # the summary table
    assert f"interrupted after 3 images; {summary.table} lists every crop written" in text
    assert text.rstrip().endswith("Run the same command again to resume."), text


def test_train_interruption_prints_its_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    from faceage.train.fold import RunInterruptedError

    hint = f"stopped at fold 0, epoch 2/3, step 1 (saved); continue with: faceage train --out {tmp_path} " \
           "--resume"
    monkeypatch.setattr("faceage.train.fit.run_training", _raise(RunInterruptedError(hint)))
    code, text = run_main(["train", "-o", str(tmp_path / "run")], monkeypatch, capsys)
    assert (code, text.strip()) == (130, hint)


def test_study_interruption_prints_its_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: Capsys) -> None:
    from faceage.study import StudyInterruptedError

    hint = "study s stopped in run mv-s0; run the same `faceage study` command again to resume."
    monkeypatch.setattr("faceage.study.run.run_study", _raise(StudyInterruptedError(hint)))
    code, text = run_main(["study", "--losses", "mv", "--seeds", "0", "-o", str(tmp_path / "s")],
                       monkeypatch, capsys)
    assert (code, text.strip()) == (130, hint)


@pytest.mark.parametrize(("args", "target"), [
    (["doctor"], "faceage.doctor.collect"),
    (["train", "-o", "RUN"], "faceage.train.fit.run_training"),
])
def test_a_bare_ctrl_c_says_interrupted(args: list[str], target: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    """Ctrl-C that no stage handled: one line, exit 130, never Typer's silence or a traceback."""
    monkeypatch.setattr(target, _raise(KeyboardInterrupt()))
    code, text = run_main([str(tmp_path / a) if a == "RUN" else a for a in args], monkeypatch, capsys)
    assert code == 130 and len(text.strip().splitlines()) == 1, text
    assert text.startswith("interrupted;") and "--resume" in text, text


def test_a_user_error_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.setattr("faceage.doctor.collect", _raise(FaceageError("x.csv: row 3 has no age; fix it.")))
    code, text = run_main(["doctor"], monkeypatch, capsys)
    assert (code, text) == (2, "error: x.csv: row 3 has no age; fix it.\n")


def test_an_unforeseen_file_error_names_the_file(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    error = PermissionError(13, "Permission denied", "/data/x.jpg")
    monkeypatch.setattr("faceage.doctor.collect", _raise(error))
    code, text = run_main(["doctor"], monkeypatch, capsys)
    assert code == 2 and text.startswith("error: /data/x.jpg: Permission denied; check the disk"), text


def test_align_options_are_align_settings_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: Capsys) -> None:
    """Each option's default and help are its AlignSettings field's; given flags reach the settings."""
    params = _params("align")
    for setting in dataclasses.fields(AlignSettings):
        option = params[setting.name]
        assert option.default == setting.default, setting.name
        if setting.name != "device":
            assert option.help == setting.metadata["help"], setting.name
    assert params["fmt"].opts == ["--format"] and params["workers"].opts == ["--workers", "-j"]

    seen: list[AlignSettings] = []
    monkeypatch.setattr("faceage.align.run.align_folder", _recorder(seen, "settings"))
    args = ["align", str(tmp_path), str(tmp_path / "out")]
    run_main(args, monkeypatch, capsys)
    run_main([*args, "--size", "128", "--keep", "best", "--device", "cuda:1", "--score-threshold", "0.7"],
          monkeypatch, capsys)
    assert seen == [AlignSettings(),
                    AlignSettings(size=128, keep="best", device="cuda:1", score_threshold=0.7)]


def test_help_shows_the_defaults_align_settings_declares(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: Capsys) -> None:
    defaults = AlignSettings()
    monkeypatch.setenv("COLUMNS", "300")
    _, align_help = run_main(["align", "--help"], monkeypatch, capsys)
    for value in (defaults.detector, defaults.size, defaults.fmt, defaults.keep, defaults.min_face,
                  defaults.score_threshold, defaults.quality, defaults.device):
        assert f"[default: {value}]" in align_help, value
    _, predict_help = run_main(["predict", "--help"], monkeypatch, capsys)
    for value in (defaults.detector, defaults.size, defaults.min_face, defaults.score_threshold):
        assert f"as the model records, else {value}" in predict_help, value
    params = _params("predict")
    assert params["detector_model"].opts == ["--detector-model"] and params["model"].opts == ["--model", "-m"]


def test_predict_builds_its_options_from_the_flags_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """Flags not given leave PredictOptions' own defaults (None: as the model records)."""
    from faceage.predict.options import PredictOptions

    seen: list[Any] = []
    monkeypatch.setattr("faceage.predict.estimator.load_estimator", lambda *a, **kw: None)
    monkeypatch.setattr("faceage.predict.photos.predict_images", _recorder(seen, "options"))
    image = str(tmp_path / "a.jpg")
    run_main(["predict", image], monkeypatch, capsys)
    run_main(["predict", image, "--size", "128", "--batch-size", "4", "--threads", "2", "--device", "cpu",
           "--detector-model", "m.onnx", "--score-threshold", "0.7"], monkeypatch, capsys)
    assert seen == [PredictOptions(threads=os.cpu_count() or 1),
                    PredictOptions(size=128, batch_size=4, threads=2, device="cpu", detector_model="m.onnx",
                                   score_threshold=0.7)]


def test_version_goes_to_stdout_and_flags_show_no_value_placeholder(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: Capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["faceage", "--version"])
    with pytest.raises(SystemExit):
        main()
    captured = capsys.readouterr()
    assert captured.out.strip().startswith("faceage ") and captured.err == ""
    for command in (["--help"], ["train", "--help"], ["align", "--help"], ["predict", "--help"]):
        _, text = run_main(command, monkeypatch, capsys)
        assert "<bool>" not in text, command
        assert "--resume" in text or command != ["train", "--help"]


NEEDS_EXTRA = [
    (["train", "-o", "RUN"], "train"),
    (["study", "-o", "RUN"], "train"),
    (["export", "RUN", "--onnx", "x.onnx"], "export"),
    (["predict", "PHOTO", "--model", "RUN"], "train"),  # a torch model; the bundled .onnx needs no extra
    (["align", "RUN", "OUT", "--detector", "insightface"], "insightface"),
]


@pytest.mark.parametrize(("args", "extra"), NEEDS_EXTRA)
def test_a_command_that_needs_a_missing_extra_names_it(
        args: list[str], extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    """On an install without the training stack (or insightface), the command says what to install."""
    import importlib.util

    real = importlib.util.find_spec
    absent = {"torch", "torchvision", "timm", "onnx", "onnxscript", "insightface"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name in absent else real(name, *rest))
    run = tmp_path / "run"
    (run / "fold0").mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    (run / "fold0" / "best.pt").write_bytes(b"x")
    (run / "photo.jpg").write_bytes(b"x")
    named = {"RUN": str(run), "OUT": str(tmp_path / "out"), "PHOTO": str(run / "photo.jpg")}
    code, text = run_main([named.get(a, a) for a in args], monkeypatch, capsys)
    assert code == 2 and f"pip install 'faceage[{extra}]'" in text, text
