"""benchmarks/gpu_check.py, the one-call GPU check, run small on the CPU (`--device cpu --quick`): every check
runs and reports figures that could be wrong; a check without its data is skipped, saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _check(out: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=400, env=env)
    assert (out / "gpu_check.json").is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_every_check_runs_small_on_the_cpu(tmp_path: Path, utkface_dir: Path, morph_dir: Path) -> None:
    code, report = _check(tmp_path, "--quick")
    checks = report["checks"]
    assert code == 0 and report["passed"] is True, checks
    assert list(checks) == ["cuda_tests", "train_resume", "ddp", "predict_export", "throughput"]
    tests = checks["cuda_tests"]
    assert tests["status"] == "skip" and "no CUDA GPU" in tests["reason"]
    assert tests["tests"] >= 5 and tests["skipped"] == tests["tests"] and tests["failures"] == 0
    train = checks["train_resume"]
    assert train["status"] == "pass"
    assert train["resumed_max_abs_diff"] == train["repeat_max_abs_diff"] == {"weights": 0.0, "mean_age": 0.0}
    assert len(train["img_s"]) == 2 and min(train["img_s"]) > 0
    ddp = checks["ddp"]
    assert ddp["status"] == "pass" and ddp["backend"] == "gloo" and ddp["loss_rel_diff"] < 1e-4
    predict = checks["predict_export"]
    assert predict["status"] == "pass" and predict["onnx_cpu_max_abs_diff"] < 1e-4
    assert predict["onnx_provider"] == predict["detector_provider"] == "CPUExecutionProvider"
    assert predict["faces"] >= 6 and predict["torch_vs_onnx_max_abs_diff_years"] < 1e-2
    speed = checks["throughput"]["ratios"]["eager"]
    assert checks["throughput"]["status"] == "pass" and set(speed) == {"a/b", "a0/b", "a/c"}
    assert all(value > 0 for value in speed.values())
    assert report["environment"]["torch"] and all(entry["seconds"] >= 0 for entry in checks.values())


def test_checks_without_their_data_are_skipped_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "FACEAGE_SHARED": str(tmp_path / "nowhere")}
    names = "train_resume,ddp,predict_export,throughput"
    code, report = _check(tmp_path / "out", "--quick", "--checks", names, env=env)
    checks = report["checks"]
    assert code == 0 and {entry["status"] for entry in checks.values()} == {"skip"}, checks
    assert f"no UTKFace chips at {tmp_path / 'nowhere'}" in checks["train_resume"]["reason"]
    assert "did not leave" in checks["ddp"]["reason"]
    assert "did not leave" in checks["predict_export"]["reason"]
