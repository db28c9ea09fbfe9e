"""The speed settings of training: cuDNN autotuning and fused SGD on CUDA only, torch.compile in the GPU
recipes, and img/s without the first step (compilation, autotuning), checked on a clock the model drives."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import faceage.train.loop as loop_module
from faceage.model.device import autotune_convolutions
from faceage.model.losses import make_loss
from faceage.model.network import AgeModel
from faceage.train.config import TrainConfig, resolve_config
from faceage.train.distributed import DistContext
from faceage.train.loop import EpochPlan, EpochProgress, Learner, train_epoch
from faceage.train.optim import load_optimizer_state, make_optimizer

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
CPU = torch.device("cpu")


@pytest.fixture
def cudnn_benchmark() -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cudnn.benchmark = before


def test_cudnn_autotuning_is_switched_on_for_cuda_only(cudnn_benchmark: None) -> None:
    autotune_convolutions(CPU)
    assert torch.backends.cudnn.benchmark is False
    autotune_convolutions(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True


def test_sgd_is_fused_on_cuda_only_and_a_resume_keeps_the_devices_choice() -> None:
    model = nn.Linear(3, 2)
    on_gpu = make_optimizer(model, TrainConfig(), torch.device("cuda", 0))
    on_cpu = make_optimizer(model, TrainConfig(), CPU)
    assert on_gpu.defaults["fused"] is True and on_cpu.defaults["fused"] is False
    model(torch.ones(1, 3)).sum().backward()
    on_gpu.step()  # a momentum buffer to carry over
    load_optimizer_state(on_cpu, on_gpu.state_dict())  # saved on a GPU, resumed on a CPU
    assert [g["fused"] for g in on_cpu.param_groups] == [False]
    assert len(on_cpu.state) == 2 and on_cpu.param_groups[0]["lr"] == TrainConfig().lr


@pytest.mark.cuda
def test_fused_sgd_steps_like_the_plain_one_on_a_gpu() -> None:
    torch.manual_seed(0)
    models = [nn.Linear(64, 101).cuda() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [make_optimizer(models[0], TrainConfig(), torch.device("cuda")),
                  torch.optim.SGD(models[1].parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)]
    assert optimizers[0].defaults["fused"] is True
    x = torch.randn(8, 64, device="cuda")
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    torch.testing.assert_close(models[0].weight, models[1].weight)


def test_the_gpu_recipes_compile_and_the_cpu_ones_do_not() -> None:
    compiled = {recipe.stem: resolve_config(recipe).compile for recipe in sorted(PIPELINES.glob("*.yaml"))}
    assert compiled.pop("demo-morph_subset-lite0") is False
    assert compiled.pop("morph_subset-lite0-best") is False  # measured on a CPU
    assert compiled.pop("study-morph_subset-lite0") is False  # a study sized for a CPU
    assert compiled and all(compiled.values()), compiled


class _Clock:
    """perf_counter for the loop: the model's forward moves it on, 10 s the first time, 1 s after."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, *_: object) -> None:
        self.now += 1.0 if self.now else 10.0


def test_img_s_leaves_the_first_step_out(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(loop_module, "perf_counter", clock)
    backbone = nn.Flatten()
    backbone.num_features = 48  # what AgeModel reads from a timm backbone
    model = AgeModel(backbone, "distribution")
    model.register_forward_pre_hook(clock.tick)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(torch.randn(4, 3, 4, 4), torch.full((4,), 30.0)) for _ in range(4)]
    plan = EpochPlan(iter(batches), 4, "test")
    progress = EpochProgress()
    train_epoch(Learner(model, model, make_loss("mv"), optimizer), plan, progress,
                DistContext(0, 1, CPU), lambda: False)
    assert (progress.images, progress.seconds) == (16, 13.0)  # every step counts in the totals
    assert (progress.warmup_images, progress.warmup_seconds) == (4, 10.0)  # the compiling step
    assert progress.img_s() == 12 / 3.0  # the three steps after it
    assert EpochProgress(images=8, seconds=2.0, warmup_images=8, warmup_seconds=2.0).img_s() == 4.0


PAGE_FAULTS_OF_TRAINING_STEPS = """
import resource, sys, torch
from faceage.model.device import reuse_freed_memory
made = reuse_freed_memory(torch.device(sys.argv[1]))
torch.manual_seed(0)
net = torch.nn.Conv2d(3, 64, 3, padding=1)
x = torch.randn(8, 3, 160, 160)  # activations of 52 MB: over glibc's 32 MiB mmap threshold
def step():
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(made, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_of_training_steps(device: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    """(setting made, page faults) of five training steps with 52 MB activations in a fresh process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_TRAINING_STEPS, device],
                         env=environ | (env or {}), check=True, capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_cpu_processes_reuse_freed_activations_instead_of_faulting_them_in_again() -> None:
    made, default = _page_faults_of_training_steps("cuda")  # not applied for CUDA: glibc's default
    assert not made and default > 5 * (52 << 20) // resource.getpagesize()  # every activation, every step
    made, kept = _page_faults_of_training_steps("cpu")
    assert made and kept < default // 10
    made, faults = _page_faults_of_training_steps("cpu", {"MALLOC_MMAP_MAX_": "65536"})  # the user's choice
    assert not made and faults > default // 2
