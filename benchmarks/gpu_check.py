"""One call on a machine with one GPU: does faceage's CUDA path work, and how fast is it? Installs nothing.

    python benchmarks/gpu_check.py --out gpu_check/                        # one GPU: at most ~8 minutes
    python benchmarks/gpu_check.py --out /tmp/check --device cpu --quick   # the same checks, small, on a CPU

Each check is "pass", "fail" or "skip" (with the reason), with its figures and seconds, in DIR/gpu_check.json
(rewritten after every check, so a run cut short still leaves what it found); the exit status is 1 when a
check failed.

  cuda_tests      the suite's tests marked `cuda` (pytest -m cuda)
  train_resume    a short real training run on UTKFace chips, the same run again, and one stopped after epoch
                  1 and resumed: the resumed weights must be as close to the first run's as a second run's
                  are (bit for bit on a CPU)
  ddp             the run under torchrun with one process: NCCL (gloo on a CPU), compiled on CUDA; its first
                  epoch against the single-process one
  predict_export  `faceage export` of the run (its parity check) and predict on real photos with torch and
                  with the ONNX file on the device; the onnxruntime providers actually used
  throughput      benchmarks/train_throughput.py for resnet50 at 224 px (bf16 on CUDA), eager and compiled:
                  a/b, a0/b, a/c; on CUDA a/b must reach 0.95 eager and 0.9 compiled

Data: ../shared/data (FACEAGE_SHARED overrides ../shared): utkface/ chips to train on, morph_subset/images
photos to predict on (else chips). A check whose data or package is missing is skipped, saying which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from gpu_checks import CHECKS, FULL, QUICK, REPO, Check, SkipCheck


def environment(device: str) -> dict[str, Any]:
    import onnxruntime
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(),
                            "onnxruntime_providers": onnxruntime.get_available_providers()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and the runs")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a tiny backbone, few steps)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for all checks (default 480)")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"a subset of {list(CHECKS)}, by commas")
    args = parser.parse_args()
    names = args.checks.split(",")
    if not set(names) <= set(CHECKS):
        parser.error(f"--checks: unknown {sorted(set(names) - set(CHECKS))}; choose from {list(CHECKS)}")
    sys.path.insert(0, str(REPO))  # this checkout's faceage, installed or not
    started = time.perf_counter()
    c = Check(args.out.resolve(), args.device, QUICK if args.quick else FULL, started + args.budget)
    c.out.mkdir(parents=True, exist_ok=True)
    gpu = _has_gpu()
    report: dict[str, Any] = {"device": args.device, "quick": args.quick, "budget_s": args.budget,
                              "environment": environment("cuda" if gpu else "cpu"), "checks": {}}
    for name in names:
        began = time.perf_counter()
        try:
            if args.device == "cuda" and not gpu:
                raise SkipCheck("torch sees no CUDA GPU (use --device cpu)")
            entry = CHECKS[name](c)
        except SkipCheck as exc:
            entry = {"status": "skip", "reason": str(exc)}
        except Exception as exc:  # a check that breaks is a failed check, and the others still run
            entry = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"}
        report["checks"][name] = {**entry, "seconds": round(time.perf_counter() - began, 1)}
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["passed"] = all(e["status"] != "fail" for e in report["checks"].values())
        (c.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"{name}: {entry['status']} {entry.get('reason', '')[:300]}", flush=True)
    return 0 if report["passed"] else 1


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
