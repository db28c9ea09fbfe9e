"""Commands that train, evaluate and use models: train, eval, predict, export."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from faceage.cli.app import app
from faceage.core.console import console
from faceage.core.errors import FaceageError


def with_train_options(command: Callable[..., None], exclude: Collection[str] = ()) -> Callable[..., None]:
    """Give `command` one option per TrainConfig setting (but those in `exclude`): flag, type, help and
    shown default all come from the dataclass (`faceage.train.config`), so a setting is declared once. Each
    arrives as a keyword argument, None when the flag was not given (the recipe or the saved run then
    decides). `faceage study` uses it too, without the settings it sets per run."""
    from faceage.train.config import TrainConfig, field_type

    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for setting in (s for s in dataclasses.fields(TrainConfig) if s.name not in exclude):
        kind, _ = field_type(setting.name)
        flag = "--" + setting.name.replace("_", "-")
        names = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        names += [setting.metadata["flag"]] if setting.metadata.get("flag") else []
        shown = setting.default if setting.default is not None else False
        option = typer.Option(*names, help=setting.metadata["help"],
                              show_default=False if shown is False else str(shown))
        cli_kind = str if setting.name == "fold" else kind  # `--fold k|all`
        params.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[cli_kind | None, option]))
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command


@app.command("train")
@with_train_options
def train_command(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Recipe YAML (pipelines/): overrides the defaults; flags override it.",
    )] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    **settings: Any,
) -> None:
    """Train each test fold of a manifest (or one); the best epoch on validation predicts the test fold."""
    from faceage.train.fit import RunInterruptedError, results_table, run_training
    from faceage.train.runs import resolve_run_config

    cfg = resolve_run_config(config, settings, resume)
    try:
        result = run_training(cfg)
    except RunInterruptedError as exc:
        console.print(f"[yellow]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; the last saved epoch stays: faceage train --out "
                      f"{escape(str(cfg.out))} --resume[/]", highlight=False)
        raise typer.Exit(130) from None
    if result.main:
        console.print(results_table(result))


@app.command("eval")
def eval_command(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Run folders (their predictions.csv) or predictions CSVs; default: the newest run under runs/.",
        show_default=False,
    )] = None,
    curve: Annotated[Path | None, typer.Option(
        "--curve", help="CS plot (.png, .svg or .pdf); cs.csv (θ + a column per input) is written beside it.",
    )] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Markdown report; links the plots (cs.png and coverage.png beside it unless "
                         "--curve / --coverage are given).",
    )] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Metrics as JSON.")] = None,
    coverage: Annotated[Path | None, typer.Option(
        "--coverage", help="Calibration plot (.png, .svg or .pdf): share of faces within k predicted stds "
                           "of their age against a Gaussian's, k = 0.25 … 3.",
    )] = None,
    max_theta: Annotated[int, typer.Option(
        "--max-theta", help="Largest error level θ (years) of the CS curve.",
    )] = 20,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Group run folders by this config.yaml setting (loss) and compare the groups: "
                           "mean ± std over seeds, MAE difference of each pair with its 95 % CI and p.",
    )] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", help="Bootstrap draws and permutation-test sign flips of --group-by.")] = 2000,
) -> None:
    """MAE, cumulative score CS(θ), ε-error, per-fold and per-age-group tables of predictions tables."""
    from faceage.evaluate.compare_report import comparison_tables
    from faceage.evaluate.report import console_table
    from faceage.evaluate.run import evaluate

    result = evaluate(inputs or [], curve=curve, report=report, json_path=json_path, max_theta=max_theta,
                      group_by=group_by, resamples=resamples, coverage=coverage)
    console.print(console_table(result.inputs))
    if result.comparison is not None:
        for table in comparison_tables(result.comparison, f"by {result.comparison.group_by}"):
            console.print(table)
    for path in result.written:
        console.print(f"wrote {escape(str(path))}", highlight=False)


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(
        help="Image files and folders (walked recursively).", show_default=False)],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m",
        help="Run folder (its folds' distributions averaged), a fold's best.pt/last.pt, or an exported "
             ".onnx (default: the bundled model, faceage/zoo).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write every row to this .csv or .json.")] = None,
    draw: Annotated[Path | None, typer.Option(
        "--draw", help="Folder for copies of the images with each box and 'age ± std' drawn.")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Only this fold of a run folder.")] = None,
    detector: Annotated[str | None, typer.Option(
        "--detector", help="retinaface or insightface (default: as the model records or the run's faces.csv, "
                           "else retinaface).",
        show_default=False)] = None,
    detector_model: Annotated[Path | None, typer.Option(
        "--detector-model", help="Detector model file or pack, as `faceage align --model` takes.")] = None,
    size: Annotated[int | None, typer.Option(
        "--size", help="Aligned crop side (default: as the run's aligned faces, else 256).",
        show_default=False)] = None,
    min_face: Annotated[float | None, typer.Option(
        "--min-face", help="Faces with a shorter box side (px) are listed as too_small (default 32).",
        show_default=False)] = None,
    score_threshold: Annotated[float, typer.Option(
        "--score-threshold", help="Detector confidence a face needs.")] = 0.5,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int | None, typer.Option(
        "--threads", help="onnxruntime threads of the detector and of an .onnx model (default: all cores).",
        show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Faces per model call.")] = 32,
) -> None:
    """Age ± std of every face in the images: detect, align as training did, predict; failures listed.

    With no --model, the bundled model (trained on UTKFace, MORPH and ChaLearn faces; its card is
    faceage/zoo/README.md) predicts, offline."""
    import os

    import faceage.predict.photos as pr
    from faceage.predict.estimator import load_estimator

    threads = threads or os.cpu_count() or 1

    if out is not None:
        pr.check_out(out, images)
    estimator = load_estimator(model, fold=fold, device=device, threads=threads)
    options = pr.PredictOptions(detector, None if detector_model is None else str(detector_model), size,
                                min_face, score_threshold, threads, device, batch_size)
    result = pr.predict_images(estimator, images, options, draw_dir=draw)
    console.print(pr.predictions_table(result.table))
    for line in pr.failures(result.table):
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)
    if out is not None:
        pr.write_predictions(result.table, out)
        console.print(f"wrote {escape(str(out))}", highlight=False)
    if draw is not None:
        console.print(f"drew {len(result.drawn)} images into {escape(str(draw))}", highlight=False)
    if result.draw_error is not None:
        raise FaceageError(result.draw_error + (f" The predictions are in {out}." if out else ""))
    if result.read == 0:
        console.print(f"[bold red]none of the {result.images} images could be read[/]", highlight=False)
        raise typer.Exit(1)


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(
        help="Run folder (its folds averaged into one graph) or a fold's checkpoint.", show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="The .onnx file to write.", show_default=False)],
    fold: Annotated[int | None, typer.Option("--fold", help="Only this fold of a run folder.")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    faces: Annotated[Path | None, typer.Option(
        "--faces", help="Aligned faces for the parity check (default: the run's aligned folder).")] = None,
) -> None:
    """The model as ONNX (dynamic batch; probs, mean, std), checked against torch in onnxruntime."""
    from faceage.predict.export import PARITY_TOLERANCE, export_onnx

    result = export_onnx(run, onnx, fold=fold, opset=opset, faces=faces)
    cuda = "" if result.cuda_max_abs_diff is None else f", CUDA {result.cuda_max_abs_diff:.1e}"
    console.print(f"wrote {escape(str(result.path))} (folds {list(result.info.folds)}); onnxruntime vs torch "
                  f"on {result.faces} aligned faces: max |Δ| CPU {result.max_abs_diff:.1e}{cuda} "
                  f"(limit {PARITY_TOLERANCE:g})", highlight=False)
