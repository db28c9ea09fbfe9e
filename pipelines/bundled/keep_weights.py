"""Ship another of a run's models than the one it kept: a copy of the run folder whose fold0/best.pt holds
the kept, the last epoch's or the averaged (EMA) weights, with or without the test-time flip, calibrated
again on the validation faces by train's own routine (`train.calibrate.calibrate_kept_model`), ready for
`faceage export`.

    python pipelines/bundled/keep_weights.py --run work/bundled/run --weights average \
        --out work/bundled/run-average
    python pipelines/bundled/keep_weights.py --run work/bundled/run --weights kept --no-flip \
        --out work/bundled/run-no-flip    # half the model's work per face (predict's speed target)

kept_choice.py says which weights to ship; the copy records the choice in best.pt's `kept` ("best", "last"
or "ema"), `epoch` and `config.tta_flip`, and its validation MAE in `val_mae`. The original run is left as
it was. The copy has no last.pt and no predictions.csv (those belong to the model the run kept).
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
    p.add_argument("--weights", choices=["kept", *sorted(WEIGHTS)], required=True,
                   help="which weights to keep: the run's kept model's, the last epoch's or the average's")
    p.add_argument("--no-flip", action="store_true", help="predict without the test-time flip")
    p.add_argument("--out", type=Path, required=True, help="the run copy to write (must not exist)")
    args = p.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    run = RunFaces.open(args.run)
    if args.weights == "kept":
        weights, kept, epoch = run.best["model"], run.best.get("kept", "best"), run.best["epoch"]
    else:
        field, kept = WEIGHTS[args.weights]
        if field not in run.last:
            raise SystemExit(f"{args.run}/fold0/last.pt holds no '{field}' weights")
        weights, epoch = run.last[field], run.last["epochs_done"]  # type: ignore[literal-required]
    model = run.model(weights)
    flip = run.config["tta_flip"] and not args.no_flip
    job = SimpleNamespace(predictions=lambda m, rows: run.predictions(m, rows, flip), ages=run.ages,
                          cfg=SimpleNamespace(calibrate_bands=False))
    calibration = calibrate_kept_model(job, 0, run.split, model)  # type: ignore[arg-type]
    val_mae = mae(run.predictions(model, run.split.val, flip)["pred"], run.ages(run.split.val))
    best = {**run.best, "model": model.state_dict(), "kept": kept, "epoch": epoch, "val_mae": val_mae,
            "calibration": calibration, "config": {**run.best["config"], "tta_flip": flip}}
    staging = args.out.with_name(f".{args.out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(args.run, staging, ignore=shutil.ignore_patterns("last.pt", "predictions*", ".faceage*"))
    save_checkpoint(staging / "fold0" / "best.pt", best)
    staging.rename(args.out)
    print(f"{args.out}: fold0/best.pt holds the {args.weights} weights (epoch {epoch}, flip {flip}, "
          f"validation MAE {val_mae:.3f}, std × {calibration['std_scale']:.3f})")


if __name__ == "__main__":
    main()
