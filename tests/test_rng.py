"""The RNG states a checkpoint carries: the CPU's and the process's own GPU's, so a run resumes on another
number of GPUs (no GPU is needed: torch.cuda's state functions are replaced by recorders)."""

from __future__ import annotations

import pytest
import torch

from faceage.train.rng import rng_state, set_rng_state

CUDA0, CUDA1 = torch.device("cuda", 0), torch.device("cuda", 1)


def _gpu_state(index: int) -> torch.Tensor:
    return torch.full((16,), index, dtype=torch.uint8)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.device]]:
    """torch.cuda as on a machine with GPUs in use: per-device state calls are recorded; the all-device
    calls fail as they do when the saved list is longer than the GPUs present."""
    restored: list[tuple[torch.Tensor, torch.device]] = []

    def all_devices(*args: object) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: _gpu_state(torch.device(device).index))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", all_devices)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", all_devices)
    return restored


def test_only_the_own_gpu_state_is_saved(one_gpu: list) -> None:
    state = rng_state(CUDA1)
    assert set(state) == {"cpu", "cuda"}
    assert torch.equal(state["cuda"], _gpu_state(1))
    assert torch.equal(state["cpu"], torch.get_rng_state())
    assert set(rng_state(torch.device("cpu"))) == {"cpu"}  # a CPU run carries no GPU state


def test_a_state_saved_on_eight_gpus_resumes_on_one(one_gpu: list) -> None:
    """Checkpoints written before per-device states hold one state per visible GPU: resuming on GPU 0 of a
    one-GPU machine restores GPU 0's state only (restoring all eight raised IndexError)."""
    saved = {"cpu": torch.get_rng_state(), "cuda": [_gpu_state(i) for i in range(8)]}
    set_rng_state(saved, CUDA0)
    assert len(one_gpu) == 1
    state, device = one_gpu[0]
    assert torch.equal(state, _gpu_state(0)) and device == CUDA0


def test_the_saved_state_goes_to_this_process_gpu(one_gpu: list) -> None:
    set_rng_state({"cpu": torch.get_rng_state(), "cuda": _gpu_state(5)}, CUDA1)  # rank 1 of a DDP job
    assert [(s.tolist(), d) for s, d in one_gpu] == [(_gpu_state(5).tolist(), CUDA1)]
    set_rng_state({"cpu": torch.get_rng_state(), "cuda": _gpu_state(5)}, torch.device("cpu"))
    assert len(one_gpu) == 1  # resumed on a CPU: the GPU state is not applied


def test_the_cpu_state_is_restored() -> None:
    state = rng_state(torch.device("cpu"))
    expected = torch.rand(4)
    torch.rand(7)
    set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.cuda
def test_the_gpu_state_round_trips_on_a_real_gpu() -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    torch.rand(1, device=device)  # CUDA in use
    state = rng_state(device)
    expected = torch.rand(8, device=device)
    torch.rand(3, device=device)
    set_rng_state(state, device)
    assert torch.equal(torch.rand(8, device=device), expected)
