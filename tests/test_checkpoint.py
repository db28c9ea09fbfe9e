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
from faceage.model.checkpoint import CheckpointWriter, load_checkpoint


def test_the_file_holds_the_state_when_save_was_called(tmp_path: Path) -> None:
    """Training changes the weights in place right after `save`: the file keeps the values of that moment,
    in every file that shares them."""
    weights = torch.zeros(1000)
    state = {"model": {"w": weights}, "progress": {"sums": {"loss": 1.0}}, "epoch": 3}
    with CheckpointWriter() as writer:
        writer.save([(tmp_path / "best.pt", {"model": state["model"]}), (tmp_path / "last.pt", state)])
        weights += 1  # the next optimiser step
        state["progress"]["sums"]["loss"] = 9.0  # the next epoch's meters
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
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
