"""The `faceage` command line: one thin command per stage, each calling one typed library function.

Commands parse options, build a config, call the library, and print. No library module imports this one.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from faceage import __version__
from faceage.core.console import console, setup_logging
from faceage.core.errors import FaceageError

app = typer.Typer(
    name="faceage",
    help="Age estimation from a face with the mean-variance loss: align → manifest → train → eval → predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"faceage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    setup_logging(verbose)


# Stage commands are added below, one function each.


@app.command("align")
def align_command(
    src: Annotated[Path, typer.Argument(help="Folder of images, walked recursively (never modified).")],
    dst: Annotated[Path, typer.Argument(help="Output folder: DST/<relative path>.jpg and DST/faces.csv.")],
    detector: Annotated[str, typer.Option(
        "--detector", help="retinaface (bundled, offline) or insightface (SCRFD, needs --model).",
    )] = "retinaface",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Detector ONNX file, or an insightface model-pack folder.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="Worker processes, one detector thread each.", show_default="all cores",
    )] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format: jpg or png.")] = "jpg",
    size: Annotated[int, typer.Option("--size", help="Side of the square aligned crop, px.")] = 256,
    keep: Annotated[str, typer.Option(
        "--keep", help="Face kept when there are several: largest (box area) or best (score).")] = "largest",
    min_face: Annotated[float, typer.Option(
        "--min-face", help="A kept face whose box's shorter side is below this (source px) is too_small.",
    )] = 32.0,
    score_threshold: Annotated[float, typer.Option(
        "--score-threshold", help="Detector confidence a face needs, 0..1.")] = 0.5,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="i/n: align only share i of n (by a hash of the path), into faces.shard-i-of-n.csv; "
        "a later run without --shard merges the shards into faces.csv.")] = None,
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality, 1..100.")] = 95,
) -> None:
    """Detect five landmarks, align each image's face to a square crop, and list every image in faces.csv."""
    from faceage.align.plan import parse_shard
    from faceage.align.run import AlignInterruptedError, align_folder, summary_table
    from faceage.align.settings import AlignSettings

    settings = AlignSettings(detector, None if model is None else str(model), size, fmt, quality,
                             keep, min_face, score_threshold)  # type: ignore[arg-type]
    try:
        summary = align_folder(src, dst, settings, workers=workers, shard=parse_shard(shard))
    except AlignInterruptedError as exc:
        console.print(summary_table(exc.summary))
        console.print(f"[yellow]interrupted; {escape(str(exc.summary.table))} lists every crop written. "
                      "Run the same command again to resume.[/]", highlight=False)
        raise typer.Exit(130) from None
    console.print(summary_table(summary))


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
        "--report", help="Markdown report; links the plot (cs.png beside it unless --curve is given).",
    )] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Metrics as JSON.")] = None,
    max_theta: Annotated[int, typer.Option(
        "--max-theta", help="Largest error level θ (years) of the CS curve.",
    )] = 20,
) -> None:
    """MAE, cumulative score CS(θ), ε-error, per-fold and per-age-group tables of predictions tables."""
    from faceage.evaluate.report import console_table
    from faceage.evaluate.run import evaluate

    result = evaluate(inputs or [], curve=curve, report=report, json_path=json_path, max_theta=max_theta)
    console.print(console_table(result.inputs))
    for path in result.written:
        console.print(f"wrote {escape(str(path))}", highlight=False)


@app.command("doctor")
def doctor_command() -> None:
    """Versions, onnxruntime providers, torch devices and where the detector models come from."""
    from faceage.doctor import collect, render

    console.print(render(collect()))


@app.command("manifest")
def manifest_command(
    aligned: Annotated[Path | None, typer.Argument(
        help="Folder written by `faceage align` (with faces.csv); with --pre-aligned, the dataset's own "
             "aligned images. Not needed with --labels-only.", show_default=False,
    )] = None,
    *,
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="morph2, fgnet, clap2016, appa-real, utkface or csv.", show_default=False,
    )],
    protocol: Annotated[str, typer.Option(
        "--protocol", "-p", help="rs, se (subject-exclusive), lopo (one fold per subject) or official.",
        show_default=False,
    )],
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Label file or folder; morph2, fgnet and utkface may omit it (names are parsed).",
    )] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Default: manifests/<dataset>/<protocol>.csv.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Test folds of rs and se.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fold and validation draws.")] = 0,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Validation share of each fold's training part (from the next fold); 0: none.",
    )] = 0.1,
    pre_aligned: Annotated[bool, typer.Option(
        "--pre-aligned", help="ALIGNED holds the images at the label paths (no faces.csv).")] = False,
    labels_only: Annotated[bool, typer.Option(
        "--labels-only", help="No images: paths are the names `faceage align` will write.")] = False,
    age: Annotated[str | None, typer.Option("--age", help="appa-real: apparent (default) or real.")] = None,
    skip_malformed: Annotated[bool, typer.Option(
        "--skip-malformed", help="Drop (and list) names that do not match the dataset's pattern.")] = False,
    path_col: Annotated[str, typer.Option("--path-col", help="csv: column of image paths.")] = "path",
    age_col: Annotated[str, typer.Option("--age-col", help="csv: column of ages.")] = "age",
    subject_col: Annotated[str | None, typer.Option("--subject-col", help="csv: subject ids.")] = None,
    std_col: Annotated[str | None, typer.Option("--std-col", help="csv: crowd age std.")] = None,
    split_col: Annotated[str | None, typer.Option("--split-col", help="csv: train/valid/test.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="--labels-only: aligned image format.")] = "jpg",
    dropped: Annotated[Path | None, typer.Option(
        "--dropped", help="Also write every dropped row (path, reason, detail) to this CSV.")] = None,
) -> None:
    """Fold manifest of a dataset: labels joined with the aligned faces, folds per evaluation protocol."""
    import faceage.manifest.build as mf
    from faceage.core.layout import default_manifest_path
    from faceage.manifest.datasets import CsvColumns, LabelOptions

    if pre_aligned and labels_only:
        raise FaceageError("--pre-aligned and --labels-only exclude each other; choose one.")
    options = LabelOptions(skip_malformed, age,  # type: ignore[arg-type]  # checked by build_manifest
                           CsvColumns(path_col, age_col, subject_col, std_col, split_col))
    source: mf.ImageSource = "pre-aligned" if pre_aligned else "labels-only" if labels_only else "faces"
    result = mf.build_manifest(dataset, protocol, aligned, labels=labels, source=source, folds=folds,
                               seed=seed, val_fraction=val_fraction, options=options, fmt=fmt)
    out = out or default_manifest_path(dataset, protocol)
    mf.write_manifest(result, out, dropped)
    mf.print_summary(result.summary, out)


def _with_train_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` one option per TrainConfig setting: flag, type, help and shown default all come from
    the dataclass (`faceage.train.config`), so a setting is declared once. Each arrives as a keyword
    argument, None when the flag was not given (the recipe or the saved run then decides)."""
    from faceage.train.config import TrainConfig, field_type

    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for setting in dataclasses.fields(TrainConfig):
        kind, _ = field_type(setting.name)
        flag = "--" + setting.name.replace("_", "-")
        names = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        names += [setting.metadata["flag"]] if setting.metadata.get("flag") else []
        shown = setting.default if setting.default is not None else False
        option = typer.Option(*names, help=setting.metadata["help"],
                              show_default=False if shown is False else str(shown))
        cli_kind = str if setting.name == "fold" else kind  # `--fold k|all`
        params.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[cli_kind | None, option]))  # type: ignore[valid-type]
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command


@app.command("train")
@_with_train_options
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


@app.command("predict")
def predict_command(
    model: Annotated[Path, typer.Argument(
        help="Run folder (its folds' distributions averaged), a fold's best.pt/last.pt, or an exported "
             ".onnx.",
        show_default=False)],
    images: Annotated[list[Path], typer.Argument(
        help="Image files and folders (walked recursively).", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write every row to this .csv or .json.")] = None,
    draw: Annotated[Path | None, typer.Option(
        "--draw", help="Folder for copies of the images with each box and 'age ± std' drawn.")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Only this fold of a run folder.")] = None,
    detector: Annotated[str | None, typer.Option(
        "--detector", help="retinaface or insightface (default: as the run's faces.csv, else retinaface).",
        show_default=False)] = None,
    detector_model: Annotated[Path | None, typer.Option(
        "--model", help="Detector model file or pack, as for `faceage align`.")] = None,
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
    """Age ± std of every face in the images: detect, align as training did, predict; failures listed."""
    import os

    import faceage.predict.photos as pr
    from faceage.predict.estimator import load_estimator

    threads = threads or os.cpu_count() or 1

    if out is not None:
        pr.check_out(out)
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


@app.command("demo")
def demo_command(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Images with MORPH-style names (default: $FACEAGE_DATA, else "
        "../shared/data/morph_subset/images, else insightface's sample photos, aligned only).",
    )] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for every stage's output.")] = Path("demo_out"),
    recipe: Annotated[Path, typer.Option("--recipe", help="Training recipe of the demo run.")] = Path(
        "pipelines/demo-morph_subset-lite0.yaml"),
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override the recipe's epochs.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="Align processes (default: all cores).",
    )] = None,
) -> None:
    """The main job on demo data: align → manifest → train → eval → predict; a rerun resumes."""
    from faceage.demo import run_demo

    result = run_demo(data, out, recipe, epochs, device, workers)
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    console.rule("results")
    for name, path in (("aligned faces", result.aligned), ("manifest", result.manifest), ("run", result.run),
                       ("report", result.report), ("drawn predictions", result.drawn)):
        if path is not None:
            console.print(f"{name}: {escape(str(path))}", highlight=False)


def main() -> None:
    """Entry point of the console script: user errors print one clear message and exit 2."""
    try:
        app()
    except FaceageError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
