"""Calibrate a fold's kept model after its best epoch is chosen: fit the std scale, then its factor per
predicted-age band, on the fold's validation rows (never its test rows), and log what each did to the test
fold's coverage (share of faces within 1 and 2 predicted stds of their age), so every run shows what
calibration changed."""

from __future__ import annotations

from typing import Any

import numpy as np

from faceage.core.console import log
from faceage.evaluate.metrics import calibrate, mae
from faceage.manifest.protocols import FoldSplit
from faceage.model.calibration import fit_std_bands, std_scale
from faceage.model.network import AgeModel
from faceage.train.job import TrainingJob


def wants_calibration(job: TrainingJob, model: AgeModel, split: FoldSplit) -> bool:
    """Whether the fold's model gets a std scale: asked for, a distribution head, and validation rows."""
    if not job.cfg.calibrate or model.head_kind != "distribution":
        return False
    if not len(split.val):
        log.warning("no validation rows: the fold's uncertainty stays uncalibrated")
        return False
    return True


def calibrate_kept_model(job: TrainingJob, k: int, split: FoldSplit, model: AgeModel) -> dict[str, Any]:
    """Fit `model`'s std scale (it holds the kept weights) on fold k's validation rows and set it in the
    model; returns the record best.pt stores as "calibration"."""
    model.std_scale.fill_(1.0)
    val = job.predictions(model, split.val)
    scale = std_scale(val["mean"], val["std"], job.ages(split.val))
    test = job.predictions(model, split.test)
    age = job.ages(split.test)
    scores = {name: _scores(test["pred"], test["mean"], test["std"] * factor, age)
              for name, factor in (("uncalibrated", 1.0), ("std_scale", scale))}
    model.std_scale.fill_(scale)
    log.info("fold %d: calibration on %d validation rows: std × %.3f; test within 1/2 std %s → %s", k,
             len(split.val), scale, _shares(scores["uncalibrated"]), _shares(scores["std_scale"]))
    record = {"method": "std_scale", "std_scale": scale, "val_rows": len(split.val), "test": scores}
    if job.cfg.calibrate_bands:
        bands = fit_std_bands(val["mean"], val["std"] * scale, job.ages(split.val))
        scores["bands"] = _scores(test["pred"], test["mean"], bands.apply(test["mean"], test["std"] * scale),
                                  age)
        log.info("fold %d: then × %s by predicted-age band (edges %s): test within 1/2 std %s", k,
                 "/".join(f"{f:.2f}" for f in bands.factors), "/".join(f"{e:g}" for e in bands.edges[1:-1]),
                 _shares(scores["bands"]))
        record["bands"] = bands.to_record()
    return record


def _scores(pred: np.ndarray, mean: np.ndarray, std: np.ndarray, age: np.ndarray) -> dict[str, float]:
    shares = calibrate(mean, age, std, "mean")
    return {"mae": mae(pred, age), "within_1std": shares.within_1std, "within_2std": shares.within_2std}


def _shares(scores: dict[str, float]) -> str:
    return f"{100 * scores['within_1std']:.1f}/{100 * scores['within_2std']:.1f} %"
