"""The checks of benchmarks/gpu_check.py (run that script; it explains them) and what they share: the sizes
of each mode, the output folder, the time budget and the subprocess environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEAGE_SHARED", REPO.parent / "shared"))
UTKFACE, MORPH = SHARED / "data" / "utkface", SHARED / "data" / "morph_subset" / "images"
TARGETS = {"eager": 0.95, "compiled": 0.9}  # a/b on CUDA (issue 14)
PREDICT_TOLERANCE = 0.1  # years: torch and ONNX ages of the same faces (fp32 both; TF32 convolutions on CUDA)


@dataclass(frozen=True)
class Plan:
    """Sizes of one mode: the training runs and the throughput benchmark's arguments."""

    chips: int
    backbone: str
    img_size: int
    resize: int
    batch_size: int
    bench: tuple[str, ...]


FULL = Plan(1536, "resnet18", 224, 256, 64, ("--backbone", "resnet50", "--img-size", "224", "--resize", "256",
                                             "--batch-size", "64", "--steps", "100", "--rounds", "3",
                                             "--warmup", "10", "--compile"))
QUICK = Plan(96, "test_resnet", 32, 36, 8, ("--backbone", "test_resnet", "--img-size", "32", "--resize", "36",
                                            "--batch-size", "16", "--steps", "6", "--rounds", "2",
                                            "--warmup", "2", "--num-images", "128", "--loader-workers", "1"))


class SkipCheck(Exception):  # noqa: N818 - not an error: a check that cannot run here
    """A check that cannot run here; the message says why."""


@dataclass
class Check:
    """What the checks share: output folder, device, sizes and the deadline of the time budget."""

    out: Path
    device: str
    plan: Plan
    deadline: float

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def env(self) -> dict[str, str]:
        """The environment of subprocesses: this checkout first on the path, wide console lines."""
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        threads = {} if self.cuda else {"OMP_NUM_THREADS": "1"}  # CPU processes side by side
        return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **threads}

    def run(self, command: list[str], what: str) -> subprocess.CompletedProcess[str]:
        """Run a subprocess within the time left; a timeout fails the check, naming it."""
        limit = self.remaining()
        if limit < 5:
            raise SkipCheck(f"out of the time budget before {what}")
        try:
            return subprocess.run(command, cwd=REPO, env=self.env(), capture_output=True, text=True,
                                  timeout=limit)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{what} did not finish within the {limit:.0f} s left of the budget") from None

    def data(self) -> tuple[Path, Path]:
        """(chips folder, RS manifest with 2 folds): `plan.chips` UTKFace chips linked into the output."""
        from faceage.manifest.build import build_manifest, write_manifest

        chips, manifest = self.out / "chips", self.out / "utkface-rs.csv"
        if not manifest.exists():
            if not UTKFACE.is_dir():
                raise SkipCheck(f"no UTKFace chips at {UTKFACE} (set FACEAGE_SHARED to the folder with "
                                f"data/)")
            chips.mkdir(parents=True, exist_ok=True)
            for chip in sorted(UTKFACE.glob("*.jpg"))[: self.plan.chips]:
                (chips / chip.name).unlink(missing_ok=True)
                (chips / chip.name).symlink_to(chip)
            result = build_manifest("utkface", "rs", chips, source="pre-aligned", folds=2, val_fraction=0.1)
            write_manifest(result, manifest)
        return chips, manifest

    def settings(self, out: Path, epochs: int = 2) -> dict[str, Any]:
        chips, manifest = self.data()
        p = self.plan
        return {"images": chips, "manifest": manifest, "protocol": "rs", "fold": 0, "out": out,
                "backbone": p.backbone, "pretrained": "none", "img_size": p.img_size, "resize": p.resize,
                "batch_size": p.batch_size, "epochs": epochs, "step_size": 1, "gamma": 0.5, "lr": 0.01,
                "device": self.device, "workers": 1 if self.plan is QUICK else None, "keep_last": True}


def cuda_tests(c: Check) -> dict[str, Any]:
    if find_spec("pytest") is None:
        raise SkipCheck("pytest is not installed (pip install 'faceage[test]')")
    files = sorted(str(p) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    xml = c.out / "cuda_tests.xml"
    done = c.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                  f"--junitxml={xml}", *files], "the CUDA tests")
    if not xml.exists():
        raise RuntimeError(f"pytest wrote no report (exit {done.returncode}): {done.stdout[-1500:]}")
    suite = ElementTree.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    if counts["failures"] or counts["errors"]:
        return {"status": "fail", "reason": done.stdout[-3000:], **counts}
    if counts["skipped"] == counts["tests"]:
        reason = f"no CUDA GPU: all {counts['tests']} CUDA tests skipped"
        return {"status": "skip", "reason": reason, **counts}
    return {"status": "pass", **counts}


def _train(c: Check, out: Path, epochs: int = 2, resume: bool = False) -> None:
    from faceage.train.fit import run_training
    from faceage.train.runs import resolve_run_config

    run_training(resolve_run_config(None, c.settings(out, epochs), resume))


def _weights_diff(a: Path, b: Path) -> float:
    """Max |Δ| between the weights of two checkpoints."""
    from faceage.model.checkpoint import load_checkpoint

    wa, wb = (load_checkpoint(path)["model"] for path in (a, b))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa)


def _differences(a: Path, b: Path) -> dict[str, float]:
    """Max |Δ| of two runs' final weights (fold 0's last.pt) and of their test predictions' mean ages."""
    import pandas as pd

    ages = [pd.read_csv(run / "predictions.csv")["mean"].to_numpy() for run in (a, b)]
    return {"weights": _weights_diff(a / "fold0" / "last.pt", b / "fold0" / "last.pt"),
            "mean_age": float(abs(ages[0] - ages[1]).max())}


def train_resume(c: Check) -> dict[str, Any]:
    import pandas as pd

    shutil.rmtree(c.out / "runs", ignore_errors=True)  # a rerun starts afresh
    runs = {name: c.out / "runs" / name for name in ("straight", "again", "resumed")}
    _train(c, runs["straight"])
    _train(c, runs["again"])
    _train(c, runs["resumed"], epochs=1)
    (c.out / "runs" / "epoch1.pt").hardlink_to(runs["resumed"] / "fold0" / "last.pt")  # ddp's reference
    _train(c, runs["resumed"], resume=True)
    repeat = _differences(runs["straight"], runs["again"])
    resumed = _differences(runs["straight"], runs["resumed"])
    history = pd.read_csv(runs["straight"] / "history.csv")
    figures = {"repeat_max_abs_diff": repeat, "resumed_max_abs_diff": resumed,
               "img_s": history["img_s"].round(1).tolist(), "val_mae": history["val_mae"].round(3).tolist(),
               "test_mae": float(pd.read_csv(runs["straight"] / "predictions.csv").eval("abs(pred - age)")
                                 .mean())}
    exact = all(resumed[k] <= 10 * repeat[k] for k in resumed)  # 0 when two runs agree bit for bit
    reason = "" if exact else "the resumed run is further from the first than a repeated run is"
    return {"status": "pass" if exact else "fail", "reason": reason, **figures}


def ddp(c: Check) -> dict[str, Any]:
    import pandas as pd

    reference = c.out / "runs" / "epoch1.pt"
    if not reference.exists():
        raise SkipCheck("train_resume did not leave its one-epoch run to compare with")
    out = c.out / "runs" / "ddp"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in c.settings(out, epochs=1).items() if v is not None
             and not isinstance(v, bool)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
               "faceage", "train", *flags, "--keep-last", "--compile" if c.cuda else "--no-compile"]
    done = c.run(command, "the torchrun job")
    text = done.stdout + done.stderr
    if done.returncode != 0:
        return {"status": "fail", "reason": f"torchrun exited {done.returncode}: {text[-3000:]}"}
    backend = next((b for b in ("nccl", "gloo") if f"a {b} process group" in text), "none")
    weights = _weights_diff(reference, out / "fold0" / "last.pt")
    history = pd.read_csv(out / "history.csv")
    single = pd.read_csv(c.out / "runs" / "resumed" / "history.csv").iloc[0]  # its first epoch
    rel = abs(float(history["loss"].iloc[0]) - float(single["loss"])) / abs(float(single["loss"]))
    tolerance = 2e-2 if c.cuda else 1e-4  # compiled bf16 kernels against eager ones; on a CPU: the same
    expected = "nccl" if c.cuda else "gloo"
    ok = backend == expected and rel < tolerance
    reason = "" if ok else f"backend {backend} (expected {expected}); loss differs by {rel:.2e} ({tolerance})"
    return {"status": "pass" if ok else "fail", "reason": reason, "backend": backend, "compiled": c.cuda,
            "loss_rel_diff": rel, "weights_max_abs_diff": weights, "img_s": float(history["img_s"].iloc[0])}


def predict_export(c: Check) -> dict[str, Any]:
    import numpy as np

    from faceage.align.detect import make_detector
    from faceage.align.detect.onnx import CUDA, available_providers
    from faceage.predict.estimator import load_estimator
    from faceage.predict.export import export_onnx
    from faceage.predict.options import PredictOptions
    from faceage.predict.photos import predict_images

    if find_spec("onnxscript") is None:
        raise SkipCheck("onnxscript is not installed (pip install 'faceage[export]')")
    run = c.out / "runs" / "straight"
    if not (run / "predictions.csv").exists():
        raise SkipCheck("train_resume did not leave a finished run to export")
    chips, _ = c.data()
    exported = export_onnx(run, c.out / "model.onnx", faces=chips)
    ort_device = "cuda" if c.cuda and CUDA in available_providers() else "cpu"
    photos = sorted(MORPH.glob("*.JPG"))[:8] if MORPH.is_dir() else sorted(chips.glob("*.jpg"))[:8]
    options = PredictOptions(device=ort_device, batch_size=8)
    onnx_model = load_estimator(c.out / "model.onnx", device=ort_device)
    tables = [predict_images(load_estimator(run, device=c.device), photos, options, progress=False).table,
              predict_images(onnx_model, photos, options, progress=False).table]
    ok_rows = [t[t["status"] == "ok"]["mean"].to_numpy(np.float64) for t in tables]
    diff = float(np.abs(ok_rows[0] - ok_rows[1]).max()) if len(ok_rows[0]) else float("nan")
    figures = {"onnx_cpu_max_abs_diff": exported.max_abs_diff,
               "onnx_cuda_max_abs_diff": exported.cuda_max_abs_diff,
               "faces": len(ok_rows[0]), "photos": len(photos), "torch_vs_onnx_max_abs_diff_years": diff,
               "onnx_provider": getattr(onnx_model, "provider", None),
               "detector_provider": make_detector("retinaface", device=ort_device).session.get_providers()[0]}
    if not diff < PREDICT_TOLERANCE:
        return {"status": "fail", "reason": f"torch and ONNX ages differ by {diff:.3f} years", **figures}
    if c.cuda and ort_device == "cpu":
        reason = ("this onnxruntime has no CUDA provider (pip uninstall -y onnxruntime onnxruntime-gpu && "
                  "pip install onnxruntime-gpu); CPU-provider figures recorded")
        return {"status": "skip", "reason": reason, **figures}
    return {"status": "pass", **figures}


def throughput(c: Check) -> dict[str, Any]:
    if not UTKFACE.is_dir():
        raise SkipCheck(f"no UTKFace chips at {UTKFACE} to benchmark on")
    figures = c.out / "throughput.json"
    done = c.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--device", c.device,
                  "--json", str(figures), *c.plan.bench], "the throughput benchmark")
    if done.returncode != 0:
        return {"status": "fail", "reason": f"exit {done.returncode}: {(done.stdout + done.stderr)[-3000:]}"}
    result = json.loads(figures.read_text())
    entry = {key: result[key] for key in ("backbone", "batch_size", "img_size", "steps", "rounds", "resident",
                                          "img_per_s", "ratios")}
    if not c.cuda:
        return {"status": "pass", "reason": "figures only: the a/b targets are for CUDA", **entry}
    short = {mode: round(r["a/b"], 3) for mode, r in result["ratios"].items() if r["a/b"] < TARGETS[mode]}
    reason = f"a/b below target {TARGETS}: {short}" if short else ""
    return {"status": "fail" if short else "pass", "reason": reason, "targets_a_over_b": TARGETS, **entry}


CHECKS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "cuda_tests": cuda_tests, "train_resume": train_resume, "ddp": ddp, "predict_export": predict_export,
    "throughput": throughput}
