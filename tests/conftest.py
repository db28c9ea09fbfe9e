"""Shared fixtures: where the real test data lives (../shared beside the checkout), skipping when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEAGE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `cuda` run only where torch sees a GPU (benchmarks/gpu_check.py runs them there)."""
    if item.get_closest_marker("cuda") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found at {path} (set FACEAGE_SHARED to the folder with data/, models/)")
    return path


@pytest.fixture(scope="session")
def morph_dir() -> Path:
    """Folder of the MORPH II subset (images/ and labels.csv)."""
    return _need(DATA / "morph_subset")


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    return _need(DATA / "utkface")


@pytest.fixture(scope="session")
def chalearn_dir() -> Path:
    return _need(DATA / "chalearn_lap2016_test_aligned")


@pytest.fixture(scope="session")
def fgnet_list() -> Path:
    return _need(DATA / "fgnet_manifest_only" / "fgnet_file_list.csv")


@pytest.fixture(scope="session")
def bad_inputs_dir() -> Path:
    return _need(DATA / "bad_inputs")


@pytest.fixture(scope="session")
def scrfd_model() -> Path:
    return _need(SHARED / "models" / "scrfd_500m_bnkps.onnx")
