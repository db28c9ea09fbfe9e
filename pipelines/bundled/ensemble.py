"""Several runs' kept models as one model: a run folder whose folds are the runs' kept models, so that
`faceage export` averages their age distributions as it averages a run's folds, with the std's scale fitted
again on the validation faces for the average (an average of distributions is wider than each member's).

    python pipelines/bundled/ensemble.py --runs work/bundled/run work/bundled/run-source --no-flip \
        --out work/bundled/pair
    python pipelines/bundled/card.py --run work/bundled/pair --labels work/bundled/labels.csv
    faceage export work/bundled/pair --onnx work/bundled/float.onnx

The runs must share the manifest (manifest.sha256) and the preprocessing. Two members without the test-time
flip cost what one with it costs: two passes of the network a face. So each run as trained competes with the
ensembles when its passes a face equal theirs (a run trained with its mirror against pairs without one): if
one wins, nothing is written and the run is exported as it is. Every member predicts the runs' own
cached faces through training's test path. The folder holds fold<i>/best.pt (member i in the order given,
with the ensemble's flip and std scale; its calibration record names the members), fold<i>/predictions.csv
(member i alone on the held-out faces), the ensemble's held-out predictions.csv (card.py's input) and the
first run's config.yaml with the ensemble's flip. The member runs are left as they were.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from editions import markdown
from run_faces import RunFaces

from faceage.evaluate.metrics import calibrate, mae
from faceage.model.calibration import std_scale
from faceage.model.checkpoint import save_checkpoint
from faceage.model.losses import AGE_CLASSES
from faceage.model.network import AgeModel, from_probs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="+", required=True,
                   help="the candidate runs (trained on one manifest, kept with --keep-last)")
    p.add_argument("--size", type=int, help="members of the ensemble, chosen among --runs by validation MAE "
                                            "(default: every run)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False,
                   help="average each face with its mirror in every member (doubles the cost; default off)")
    p.add_argument("--labels", type=Path, required=True, help="labels.csv written by prepare.py (sources)")
    p.add_argument("--out", type=Path, required=True, help="the ensemble's run folder (must not exist)")
    args = p.parse_args()
    size = len(args.runs) if args.size is None else args.size
    if not 2 <= size <= len(args.runs):
        raise SystemExit(f"--size {size}: an ensemble needs 2 to {len(args.runs)} of the runs given")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    runs = [RunFaces.open(run) for run in args.runs]
    first = runs[0]
    _check_shared(args.runs, runs)
    val_rows, test_rows = first.split.val, first.split.test
    members = [run.model(run.best["model"]).eval() for run in runs]
    val, test = (_probs(members, first, rows, args.flip) for rows in (val_rows, test_rows))
    sources = _sources(first, args.labels)[test_rows]
    table = [[f"{_name(run)} as trained (flip {run.config['tta_flip']})", f"{run.best['val_mae']:.3f}", "",
              *_held_out_cells(pd.read_csv(run.root / "predictions.csv").set_index("path")
                               .loc[first.manifest["path"].to_numpy()[test_rows], "pred"].to_numpy(),
                               first.ages(test_rows), sources)] for run in runs]
    passes = size * (2 if args.flip else 1)
    chosen: tuple[float, tuple[int, ...]] | None = None
    for i, run in enumerate(runs):
        if _passes(run) == passes and (chosen is None or run.best["val_mae"] < chosen[0]):
            chosen = (run.best["val_mae"], (i,))
    scales: dict[tuple[int, ...], float] = {}
    for subset in itertools.combinations(range(len(runs)), size):
        val_mean, val_std = _mean_std(val[list(subset)].mean(0))
        scale = scales[subset] = std_scale(val_mean, val_std, first.ages(val_rows))
        val_mae = mae(_rounded(val_mean), first.ages(val_rows))
        test_mean, _ = _mean_std(test[list(subset)].mean(0))
        table.append([" + ".join(_name(runs[i]) for i in subset) + f" (flip {args.flip})", f"{val_mae:.3f}",
                      f"{scale:.3f}", *_held_out_cells(_rounded(test_mean), first.ages(test_rows), sources)])
        if chosen is None or val_mae < chosen[0]:
            chosen = (val_mae, subset)
    assert chosen is not None
    print(markdown(["model", "validation MAE", "std ×", "held out, all", *sorted(set(sources))], table))
    _, subset = chosen
    picked = [runs[i] for i in subset]
    rivals = sum(_passes(run) == passes for run in runs)
    print(f"\nkept: {' + '.join(_name(run) for run in picked)}, the lowest validation MAE of the "
          f"{len(table) - len(runs)} ensembles of {size}" + (f" and the {rivals} runs as trained at the same "
                                                             f"{passes} passes a face" if rivals else ""))
    if len(subset) == 1:
        print(f"nothing written: export the run as it is (faceage export {picked[0].root})")
        return
    _write(args, picked, [members[i] for i in subset], scales[subset], test[list(subset)], test_rows)


def _name(run: RunFaces) -> str:
    """A run's folder with its parent (runs are often all called `run`)."""
    return f"{run.root.parent.name}/{run.root.name}"


def _passes(run: RunFaces) -> int:
    """Passes of the network a face costs for a run as trained (two with its mirror)."""
    return 2 if run.config["tta_flip"] else 1


def _check_shared(paths: list[Path], runs: list[RunFaces]) -> None:
    """Refuse runs that did not train on the same faces or do not share one preprocessing."""
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:], strict=True):
        same_split = all(np.array_equal(getattr(run.split, part), getattr(first.split, part))
                         for part in ("train", "val", "test"))
        if _manifest_hash(run.root) != _manifest_hash(first.root) or not same_split:
            raise SystemExit(f"{path} was trained on another manifest or split than {paths[0]}; an "
                             f"ensemble is measured on faces no member saw, so its members must share them.")
        keys = ("img_size", "resize", "backbone")
        if {k: run.config[k] for k in keys} != {k: first.config[k] for k in keys}:
            raise SystemExit(f"{path} and {paths[0]} differ in backbone or input size; one preprocessing "
                             f"feeds every member of an exported model.")


def _sources(run: RunFaces, labels_csv: Path) -> np.ndarray:
    """Each manifest row's source (labels.csv's `source`), in manifest order."""
    labels = pd.read_csv(labels_csv, keep_default_na=False)
    aligned = labels["path"].str.rsplit(".", n=1).str[0] + ".jpg"
    source = run.manifest["path"].map(dict(zip(aligned, labels["source"], strict=True)))
    if source.isna().any():
        raise SystemExit(f"{labels_csv} does not list every face of the runs' manifest; pass the labels.csv "
                         f"the manifest was built from.")
    return source.to_numpy()


def _held_out_cells(pred: np.ndarray, ages: np.ndarray, sources: np.ndarray) -> list[str]:
    """Held-out MAE in all, then per source (sorted by name)."""
    return [f"{mae(pred, ages):.3f}", *(f"{mae(pred[sources == s], ages[sources == s]):.3f}"
                                        for s in sorted(set(sources)))]


def _manifest_hash(run: Path) -> str:
    return (run / "manifest.sha256").read_text().strip()


def _probs(members: list[AgeModel], run: RunFaces, rows: np.ndarray, flip: bool) -> np.ndarray:
    """Every member's age distribution of `rows` (members, N, 101) through training's test path."""
    parts: list[np.ndarray] = []
    with torch.no_grad():
        for x, _ in run.data.batches(rows, 64, train=False, generator=torch.Generator()):
            parts.append(torch.stack([m.probs(x, flip) for m in members]).numpy())
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(members), 0, AGE_CLASSES), np.float32)


def _mean_std(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (uncalibrated) std of distributions (N, 101), by the model's own definition."""
    prediction = from_probs(torch.from_numpy(probs))
    return prediction.mean.numpy().astype(np.float64), prediction.std.numpy().astype(np.float64)


def _rounded(mean: np.ndarray) -> np.ndarray:
    return np.floor(mean + 0.5)


def _scores(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> dict[str, float]:
    shares = calibrate(mean, ages, std, "mean")
    return {"mae": mae(_rounded(mean), ages), "within_1std": shares.within_1std,
            "within_2std": shares.within_2std}


def _write(args: argparse.Namespace, runs: list[RunFaces], members: list[AgeModel], scale: float,
           test: np.ndarray, test_rows: np.ndarray) -> None:
    """The ensemble's run folder, staged beside --out and renamed into place when complete."""
    first = runs[0]
    test_mean, test_std = _mean_std(test.mean(0))
    ages = first.ages(test_rows)
    scores = {name: _scores(test_mean, test_std * factor, ages)
              for name, factor in (("uncalibrated", 1.0), ("std_scale", scale))}
    staging = args.out.with_name(f".{args.out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config = {**first.config, "tta_flip": args.flip, "out": str(args.out)}
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy2(first.root / "manifest.sha256", staging / "manifest.sha256")
    held_out = pd.read_csv(first.root / "predictions.csv").set_index("path")
    order = first.manifest["path"].to_numpy()[test_rows]
    names = [str(run.root) for run in runs]
    for i, (run, member) in enumerate(zip(runs, members, strict=True)):
        member.std_scale.fill_(scale)
        calibration = {"method": "std_scale", "std_scale": scale, "val_rows": len(first.split.val),
                       "test": scores, "ensemble": names}
        best = {**run.best, "model": member.state_dict(), "fold": i, "calibration": calibration,
                "config": {**run.best["config"], "tta_flip": args.flip}}
        (staging / f"fold{i}").mkdir()
        save_checkpoint(staging / f"fold{i}" / "best.pt", best)
        _predictions(held_out, order, test[i], scale, i).to_csv(staging / f"fold{i}" / "predictions.csv")
    _predictions(held_out, order, test.mean(0), scale, 0).to_csv(staging / "predictions.csv")
    staging.rename(args.out)
    held = scores["std_scale"]
    print(f"wrote {args.out}: folds 0..{len(runs) - 1} = {', '.join(names)}; std × {scale:.3f}, held-out "
          f"within 1 / 2 std {100 * held['within_1std']:.1f} / {100 * held['within_2std']:.1f} %")


def _predictions(held_out: pd.DataFrame, order: np.ndarray, probs: np.ndarray, scale: float,
                 fold: int) -> pd.DataFrame:
    """The first run's held-out predictions.csv with these distributions' pred, mean and std."""
    mean, std = _mean_std(probs)
    table = held_out.loc[order].copy()
    table["fold"], table["pred"], table["mean"], table["std"] = fold, _rounded(mean), mean, std * scale
    return table


if __name__ == "__main__":
    main()
