"""Ship another of a run's models than the one it kept: a copy of the run folder whose fold0/best.pt holds
the last epoch's weights or their average (EMA), calibrated again on the validation faces by train's own
routine (`train.calibrate.calibrate_kept_model`), ready for `faceage export`.

    python pipelines/bundled/keep_weights.py --run work/bundled/run --weights average \
        --out work/bundled/run-average

kept_choice.py says which weights to ship; the copy records the choice in best.pt's `kept` ("last" or
"ema") and `epoch`, and its validation MAE in `val_mae`. The original run is left as it was. The copy has
no last.pt and no predictions.csv (those belong to the model the run kept).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from types import SimpleNamespace

from run_faces import RunFaces

from faceage.evaluate.metrics import mae
from faceage.model.checkpoint import save_checkpoint
from faceage.train.calibrate import calibrate_kept_model

WEIGHTS = {"last": ("model", "last"), "average": ("ema", "ema")}  # --weights → (last.pt field, best.pt kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the run folder (trained with --keep-last)")
    p.add_argument("--weights", choices=sorted(WEIGHTS), required=True, help="which weights to keep")
    p.add_argument("--out", type=Path, required=True, help="the run copy to write (must not exist)")
    args = p.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    run = RunFaces.open(args.run)
    field, kept = WEIGHTS[args.weights]
    if field not in run.last:
        raise SystemExit(f"{args.run}/fold0/last.pt holds no '{field}' weights")
    model = run.model(run.last[field])  # type: ignore[literal-required]
    job = SimpleNamespace(predictions=run.predictions, ages=run.ages,
                          cfg=SimpleNamespace(calibrate_bands=False))
    calibration = calibrate_kept_model(job, 0, run.split, model)  # type: ignore[arg-type]
    val_mae = mae(run.predictions(model, run.split.val)["pred"], run.ages(run.split.val))
    best = {**run.best, "model": model.state_dict(), "kept": kept, "epoch": run.last["epochs_done"],
            "val_mae": val_mae, "calibration": calibration}
    staging = args.out.with_name(f".{args.out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(args.run, staging, ignore=shutil.ignore_patterns("last.pt", "predictions*", ".faceage*"))
    save_checkpoint(staging / "fold0" / "best.pt", best)
    staging.rename(args.out)
    print(f"{args.out}: fold0/best.pt holds the {args.weights} weights (epoch {best['epoch']}, validation "
          f"MAE {val_mae:.3f}, std × {calibration['std_scale']:.3f})")


if __name__ == "__main__":
    main()
