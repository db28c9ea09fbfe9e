"""Test a fold's kept model: load best.pt's weights, calibrate its std on the validation rows (stored back
into best.pt), predict the test rows and write them; writing the predictions marks the fold finished."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceage.core.console import log
from faceage.evaluate.metrics import mae
from faceage.manifest.protocols import FoldSplit
from faceage.model.calibration import StdBands
from faceage.model.checkpoint import load_kept_model, save_checkpoint
from faceage.model.network import AgeModel
from faceage.train.calibrate import calibrate_kept_model, wants_calibration
from faceage.train.distributed import agree_on_failure
from faceage.train.job import TrainingJob


def test_kept_model(job: TrainingJob, k: int, split: FoldSplit, model: AgeModel) -> None:
    """`model` holds the last epoch's weights; best.pt is on disk on every rank. Test the kept model on
    fold k's test rows (its last.pt goes unless `keep_last`), logging the last epoch's MAE beside it."""
    last_mae = job.mae(model, split.test)
    best = load_kept_model(job.run.best_path(k))
    model.load_state_dict(best["model"])
    if wants_calibration(job, model, split):
        best["calibration"] = calibrate_kept_model(job, k, split, model)
        best["model"] = model.state_dict()
        with agree_on_failure(job.ctx, f"writing fold {k}'s calibration"):
            if job.run.writer:
                save_checkpoint(job.run.best_path(k), best)
    out = job.predictions(model, split.test)
    if "calibration" in best and "bands" in best["calibration"]:  # as predict applies them
        out["std"] = StdBands.from_record(best["calibration"]["bands"]).apply(out["mean"], out["std"])
    rows = job.manifest.iloc[split.test]
    table = pd.DataFrame({
        "path": rows["path"].to_numpy(), "age": rows["age"].to_numpy(), "age_std": rows["age_std"].to_numpy(),
        "subject": rows["subject"].to_numpy(), "fold": k, "pred": out["pred"], "mean": out["mean"],
        "std": out["std"], "train_median": float(np.median(job.ages(split.train))),
    })
    with agree_on_failure(job.ctx, f"writing fold {k}'s predictions"):
        job.run.write_fold_predictions(k, table, out.get("probs"))
        if not job.cfg.keep_last:
            job.run.drop_last(k)
    log.info("fold %d: test MAE %.3f on %d images (best.pt: %s model of epoch %s); the last epoch's model: "
             "%.3f", k, mae(table["pred"], table["age"]), len(table), best.get("kept", "best"), best["epoch"],
             last_mae)
