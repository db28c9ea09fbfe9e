"""Checkpoint files: the background writer copies the state when asked, writes it off the training thread,
and names the file when writing fails."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

import faceage.model.checkpoint as checkpoint_module
from faceage.core.errors import FaceageError
from faceage.model.checkpoint import (
    CheckpointWriter,
    ModelSettings,
    load_checkpoint,
    load_kept_model,
    load_training_state,
    save_checkpoint,
)


def test_the_file_holds_the_state_when_save_was_called(tmp_path: Path) -> None:
    """Training changes the weights in place right after `save`: the file keeps the values of that moment,
    in every file that shares them."""
    weights = torch.zeros(1000)
    state = {"model": {"w": weights}, "progress": {"sums": {"loss": 1.0}}, "epoch": 3}
    with CheckpointWriter() as writer:
        writer.save([(tmp_path / "best.pt", {"model": state["model"]}), (tmp_path / "last.pt", state)])
        weights += 1  # the next optimiser step
        state["progress"]["sums"]["loss"] = 9.0  # the next epoch's meters
    last, best = (torch.load(tmp_path / name, weights_only=True) for name in ("last.pt", "best.pt"))
    assert torch.equal(last["model"]["w"], torch.zeros(1000))
    assert torch.equal(best["model"]["w"], torch.zeros(1000))
    assert last["progress"] == {"sums": {"loss": 1.0}} and last["epoch"] == 3


def test_files_are_written_off_the_calling_thread_one_write_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    release = threading.Event()
    save = checkpoint_module.save_checkpoint

    def slow(path: Path, state: dict[str, Any]) -> None:
        threads.append(threading.current_thread().name)
        release.wait(10)
        save(path, state)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", slow)
    with CheckpointWriter() as writer:
        writer.save([(tmp_path / "a.pt", {"n": 1})])  # returns while the write waits
        assert not (tmp_path / "a.pt").exists()
        threading.Timer(0.2, release.set).start()
        writer.save([(tmp_path / "b.pt", {"n": 2})])  # waits for a.pt first
        assert (tmp_path / "a.pt").exists()
    assert (tmp_path / "b.pt").exists()  # leaving the block waited for it
    assert threads and all(name.startswith("faceage-checkpoint") for name in threads)


def test_a_failed_write_names_the_file_at_the_next_save_or_wait(tmp_path: Path) -> None:
    blocked = tmp_path / "last.pt"
    blocked.mkdir()  # a folder where the file should go: the rename fails
    with CheckpointWriter() as writer:
        writer.save([(blocked, {"n": 1})])
        with pytest.raises(FaceageError, match=f"{blocked}: cannot write the checkpoint .*--resume"):
            writer.save([(tmp_path / "next.pt", {"n": 2})])
    assert not (tmp_path / "next.pt").exists()
    with pytest.raises(FaceageError, match="cannot write the checkpoint"):
        with CheckpointWriter() as other:
            other.save([(blocked, {"n": 1})])  # leaving the block reports it


def _kept(**changes: Any) -> dict[str, Any]:
    """A best.pt record as `faceage train` writes it (format 2), with `changes` applied (None removes)."""
    kept: dict[str, Any] = {
        "kind": "kept", "fold": 0, "epoch": 3, "val_mae": 4.5, "model": {"w": torch.ones(2)},
        "config": {"backbone": "test_resnet", "loss": "mv", "img_size": 56, "resize": 64, "tta_flip": True},
        "kept": "best", "alignment": {"record": 1}}
    kept.update(changes)
    return {key: value for key, value in kept.items() if value is not None}


def test_a_kept_model_round_trips_with_its_settings(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "best.pt", _kept())
    best = load_kept_model(tmp_path / "best.pt")
    assert best["format"] == 2 and best["epoch"] == 3 and best["alignment"] == {"record": 1}
    assert ModelSettings.of(best, "best.pt") == ModelSettings("test_resnet", "mv", 56, 64, tta_flip=True)
    with pytest.raises(FaceageError, match=r"best\.pt: not a training state"):
        load_training_state(tmp_path / "best.pt")


@pytest.mark.parametrize(("changes", "message"), [
    ({"epoch": None}, "field 'epoch' is missing"),
    ({"model": None}, "field 'model' is missing"),
    ({"val_mae": "4.5"}, "field 'val_mae' is a str, not float"),
    ({"kind": "other"}, "field 'kind' is a str, not one of"),
    ({"alignment": [1]}, "field 'alignment' is a list, not dict"),
])
def test_a_checkpoint_with_a_missing_or_wrong_field_is_refused_by_name(
        tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    save_checkpoint(tmp_path / "best.pt", _kept(**changes))
    with pytest.raises(FaceageError, match=message) as err:
        load_checkpoint(tmp_path / "best.pt")
    assert str(tmp_path / "best.pt") in str(err.value)


@pytest.mark.parametrize(("config", "message"), [
    ({"img_size": 80}, r"config\.img_size' 80 with resize 64"),
    ({"img_size": "56"}, r"config\.img_size' is '56', not int"),
    ({"loss": "huber"}, r"config\.loss' unknown loss 'huber'"),
    ({"backbone": None}, r"config\.backbone' is missing"),
])
def test_the_settings_that_rebuild_a_model_are_checked(tmp_path: Path, config: dict[str, Any],
                                                       message: str) -> None:
    settings = {**_kept()["config"], **config}
    save_checkpoint(tmp_path / "best.pt", _kept(config={k: v for k, v in settings.items() if v is not None}))
    with pytest.raises(FaceageError, match=message):
        ModelSettings.of(load_kept_model(tmp_path / "best.pt"), tmp_path / "best.pt")


def test_a_format_1_file_from_before_the_spec_still_loads(tmp_path: Path) -> None:
    old = _kept(kind=None, kept=None, alignment=None)
    torch.save({"format": 1, **old}, tmp_path / "best.pt")
    best = load_kept_model(tmp_path / "best.pt")
    assert best["format"] == 1 and "alignment" not in best and best.get("kept", "best") == "best"
