"""`faceage study` end to end on real faces (a tiny backbone, one epoch), its resume after Ctrl-C, its
refusals, and `faceage eval --group-by loss` on run folders made another way."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import Capsys, run_main

import faceage.study.run as study_module
import faceage.train.fit as train_module
import faceage.train.fold as fold_module
from faceage.core.lock import folder_lock

TINY = ["--backbone", "test_efficientnet_gn", "--pretrained", "none", "--protocol", "se", "--img-size", "32",
        "--resize", "36", "--batch-size", "8", "--epochs", "1", "--lr", "0.01", "--device", "cpu", "--fold",
        "0", "--workers", "1"]
N_FACES = 64  # 32 subjects of 2 faces; fold 0 tests 32 faces, trains on 28 (4 validate it): 3 steps


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: this 2-core machine is shared (see test_train.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def faces(utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(images folder, SE manifest) of 64 real UTKFace chips, two faces per made-up subject, crowd std 3."""
    root = tmp_path_factory.mktemp("faces")
    rows = []
    for i, chip in enumerate(sorted(utkface_dir.glob("*.jpg"))[::50][:N_FACES]):
        (root / chip.name).write_bytes(chip.read_bytes())
        subject = i // 2
        fold = subject % 2
        rows.append({"path": chip.name, "age": min(int(chip.name.split("_")[0]), 100), "age_std": 3.0,
                     "subject": f"p{subject}", "fold": fold, "val_fold": 1 - fold if subject < 4 else -1})
    manifest = root / "se.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return root, manifest




def _study_args(faces: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["study", "--losses", "mv,l2", "--seeds", "0,1", "--out", str(out), "--images", str(faces[0]),
            "--manifest", str(faces[1]), *TINY, *extra]


def _count_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count = [0]
    make = fold_module.make_optimizer

    def counting(model: torch.nn.Module, cfg: Any, device: torch.device) -> torch.optim.Optimizer:
        optimizer = make(model, cfg, device)
        optimizer.register_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        return optimizer

    monkeypatch.setattr(fold_module, "make_optimizer", counting)
    return count


def _trained_runs(monkeypatch: pytest.MonkeyPatch, on_call: Callable[[int], None] | None = None) -> list[str]:
    """Record the run folders the study hands to run_training (calling `on_call(n)` before the n-th)."""
    names: list[str] = []
    real = study_module.run_training

    def recording(cfg: Any) -> Any:
        names.append(Path(cfg.out).name)
        if on_call is not None:
            on_call(len(names))
        return real(cfg)

    monkeypatch.setattr(study_module, "run_training", recording)
    return names


def test_study_trains_compares_and_resumes_after_ctrl_c(
    faces: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    out = tmp_path / "studies" / "tiny"
    args = _study_args(faces, out)

    def ctrl_c_in_third_run(n: int) -> None:  # Ctrl-C after the first step of l2-s0
        if n == 3:
            steps = _count_steps(monkeypatch)

            @contextlib.contextmanager
            def pressed_after_a_step() -> Iterator[Callable[[], bool]]:
                yield lambda: steps[0] >= 1

            monkeypatch.setattr(train_module, "stop_on_ctrl_c", pressed_after_a_step)

    first = _trained_runs(monkeypatch, ctrl_c_in_third_run)
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 130 and "run the same `faceage study` command again" in text, text
    assert first == ["mv-s0", "mv-s1", "l2-s0"]
    assert (out / "l2-s0" / "fold0" / "last.pt").is_file()  # the interrupted run saved its step
    assert not any((out / name).exists() for name in ("study.json", "report.md", "cs.png"))
    monkeypatch.undo()

    steps = _count_steps(monkeypatch)
    second = _trained_runs(monkeypatch)
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 0, text
    assert second == ["l2-s0", "l2-s1"]  # mv's runs were finished: skipped
    assert steps[0] == 2 + 3  # l2-s0 continued at its second step; l2-s1 trained its 3

    study = json.loads((out / "study.json").read_text())
    assert study["study"]["losses"] == ["mv", "l2"] and study["study"]["seeds"] == [0, 1]
    manifest = pd.read_csv(faces[1])
    test_rows = manifest[manifest["fold"] == 0]
    for loss in ("mv", "l2"):
        summary = study["losses"][loss]
        maes = []
        for run, seed in zip(summary["runs"], (0, 1), strict=True):
            table = pd.read_csv(out / f"{loss}-s{seed}" / "predictions.csv")
            assert sorted(table["path"]) == sorted(test_rows["path"])
            err = (table["pred"] - table["age"]).abs()
            assert (run["seed"], run["run"]) == (seed, f"{loss}-s{seed}")
            assert run["mae"] == pytest.approx(err.mean()) and run["cs5"] == pytest.approx((err <= 5).mean())
            assert run["eps"] == pytest.approx(1 - np.exp(-((table["pred"] - table["age"]) ** 2) / 18).mean())
            maes.append(err.mean())
        assert summary["mae_mean"] == pytest.approx(np.mean(maes))
        assert summary["mae_std"] == pytest.approx(np.std(maes, ddof=1))
    (pair,) = study["pairs"]
    assert (pair["a"], pair["b"]) == ("mv", "l2")
    means = {loss: study["losses"][loss]["mae_mean"] for loss in ("mv", "l2")}
    assert pair["mae_diff"] == pytest.approx(means["mv"] - means["l2"])
    assert pair["ci95"][0] <= pair["mae_diff"] <= pair["ci95"][1] and 0 < pair["p_value"] <= 1
    assert pair["n_images"] == 32 and pair["n_units"] == 16  # whole subjects are resampled
    report = (out / "report.md").read_text()
    assert pair["verdict"] in report and "![Cumulative score, mean over seeds](cs.png)" in report
    assert (out / "cs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pair["verdict"] in text and "trained 2 runs, 2 finished earlier" in text
    saved = yaml.safe_load((out / "study.yaml").read_text())
    assert saved["losses"] == ["mv", "l2"] and saved["train"]["lr"] == 0.01 and "seed" not in saved["train"]

    before = (out / "study.json").read_bytes()
    third = _trained_runs(monkeypatch)
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 0 and third == [] and (out / "study.json").read_bytes() == before  # deterministic

    code, text = run_main(_study_args(faces, out, "--lr", "0.1"), monkeypatch, capsys)
    assert code == 2 and "study.yaml" in text and "lr: 0.01 → 0.1" in text, text


def _interrupt_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(cfg: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(study_module, "run_training", stop)


def test_rerun_with_other_losses_or_seeds_is_refused(
    faces: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    out = tmp_path / "study"
    _interrupt_at_once(monkeypatch)
    code, text = run_main(_study_args(faces, out), monkeypatch, capsys)
    assert code == 130 and (out / "study.yaml").is_file(), text
    args = _study_args(faces, out)
    args[args.index("--seeds") + 1] = "0,1,2"
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 2 and "seeds: [0, 1] → [0, 1, 2]" in text and "new --out" in text, text


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--losses", "mv,huber", "unknown loss huber"),
    ("--losses", " , ", "name at least one loss"),
    ("--losses", "mv,mv", "listed twice"),
    ("--seeds", "0,1,0", "a seed is listed twice"),
    ("--seeds", "", "give at least one seed"),
    ("--seeds", "0,x", "x is not a whole number"),
])
def test_bad_lists_are_refused(option: str, value: str, message: str, faces: tuple[Path, Path],
                               tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    args = _study_args(faces, tmp_path / "study")
    args[args.index(option) + 1] = value
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 2 and message in text, text
    assert not (tmp_path / "study").exists()


def test_bad_folders_are_refused(faces: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: Capsys) -> None:
    _interrupt_at_once(monkeypatch)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, text = run_main(_study_args(faces, a_file), monkeypatch, capsys)
    assert code == 2 and "is a file, not a study folder" in text, text

    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    code, text = run_main(_study_args(faces, other), monkeypatch, capsys)
    assert code == 2 and "holds things that are not a study's (notes)" in text, text
    assert not (other / "study.yaml").exists()

    busy = tmp_path / "busy"
    with folder_lock(busy, "the study folder"):
        code, text = run_main(_study_args(faces, busy), monkeypatch, capsys)
    assert code == 2 and "in use by another faceage process" in text, text

    code, text = run_main(_study_args(faces, tmp_path / "s", "--seed", "3"), monkeypatch, capsys)
    assert code == 2 and "No such option: --seed" in text, text


def _run_folder(root: Path, name: str, loss: str, seed: int, errors: list[float]) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"loss": loss, "seed": seed, "backbone": "resnet50"}))
    rows = [{"path": f"{i}.jpg", "age": 30, "age_std": "", "subject": f"p{i // 2}", "fold": 0,
             "pred": 30 + e, "mean": 30 + e, "std": 1.0} for i, e in enumerate(errors)]
    pd.DataFrame(rows).to_csv(run / "predictions.csv", index=False)
    return run


def test_eval_groups_run_folders_by_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: Capsys) -> None:
    runs = [_run_folder(tmp_path, "a", "mv", 0, [1, -1, 2, 0]),    # MAE 1.0
            _run_folder(tmp_path, "b", "softmax", 0, [3, 3, -2, 0]),  # MAE 2.0
            _run_folder(tmp_path, "c", "mv", 1, [2, 2, 1, -1])]    # MAE 1.5
    out = tmp_path / "out"
    code, text = run_main(["eval", *map(str, runs), "--group-by", "loss", "--json", str(out / "m.json"),
                       "--report", str(out / "r.md"), "--resamples", "500"], monkeypatch, capsys)
    assert code == 0, text
    body = json.loads((out / "m.json").read_text())
    assert [i["label"] for i in body["inputs"]] == ["a", "b", "c"]
    comparison = body["comparison"]
    assert list(comparison["losses"]) == ["mv", "softmax"] and comparison["resamples"] == 500
    mv = comparison["losses"]["mv"]
    assert mv["mae_mean"] == 1.25 and mv["mae_std"] == pytest.approx(np.sqrt(0.125))
    assert [r["run"] for r in mv["runs"]] == ["a", "c"] and mv["eps_mean"] is None
    (pair,) = comparison["pairs"]
    assert pair["mae_diff"] == pytest.approx(-0.75) and pair["n_units"] == 2
    report = (out / "r.md").read_text()
    assert "## Comparison by loss" in report and pair["verdict"] in report
    assert "1.25 ± 0.35" in text  # the console's per-loss table

    bare = tmp_path / "peer.csv"
    bare.write_bytes((runs[0] / "predictions.csv").read_bytes())
    code, text = run_main(["eval", str(bare), str(runs[1]), "--group-by", "loss"], monkeypatch, capsys)
    assert code == 2 and "needs run folders" in text, text
    code, text = run_main(["eval", *map(str, runs), "--group-by", "backbone"], monkeypatch, capsys)
    assert code == 2 and "choose one of loss" in text, text
