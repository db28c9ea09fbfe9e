"""The main job end to end on data found by default: align → manifest → train → eval → predict.

Each stage is the same library call its command makes, into one output folder, so a rerun resumes: align
skips what is aligned, training continues (or skips) the saved run, and eval/predict are cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from faceage.core.console import console
from faceage.core.errors import FaceageError

DATA_ENV = "FACEAGE_DATA"
DEFAULT_DATA = Path("..") / "shared" / "data" / "morph_subset" / "images"
DEFAULT_RECIPE = Path("pipelines") / "demo-morph_subset-lite0.yaml"
PREDICT_IMAGES = 8  # raw photos that get drawn predictions at the end


@dataclass
class DemoResult:
    """Where each stage's output went (None: the stage did not run, e.g. unlabelled sample photos)."""

    data: Path
    aligned: Path
    manifest: Path | None = None
    run: Path | None = None
    report: Path | None = None
    drawn: Path | None = None
    notes: list[str] = field(default_factory=list)


def find_data(data: Path | None) -> tuple[Path, bool]:
    """The demo's images and whether they carry MORPH-style age labels in their names.

    Order: `data`, then $FACEAGE_DATA, then ../shared/data/morph_subset/images (relative to the working
    directory), then the unlabelled sample photos inside the insightface wheel (alignment only).
    """
    chosen = data or (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    if chosen is not None:
        if not chosen.is_dir():
            raise FaceageError(f"demo data folder {chosen} does not exist; pass --data DIR with images.")
        return chosen, _has_morph_names(chosen)
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA, True
    from faceage.align.detect.insightface import insightface_sample_photos

    samples = insightface_sample_photos()
    if samples is None:
        raise FaceageError(f"no demo data: {DEFAULT_DATA} is absent and so are insightface's sample "
                           f"photos; pass --data DIR or set {DATA_ENV}.")
    return samples, False


def _has_morph_names(folder: Path) -> bool:
    from faceage.manifest.names import PATTERNS

    names = [p.name for p in folder.iterdir() if p.is_file()][:50]
    return bool(names) and all(PATTERNS["morph2"].regex.match(name) for name in names)


def run_demo(data: Path | None = None, out: Path = Path("demo_out"), recipe: Path = DEFAULT_RECIPE,
             epochs: int | None = None, device: str = "auto", workers: int | None = None) -> DemoResult:
    """Run every stage on the demo data into `out`; returns where the results are."""
    from faceage.align.run import align_folder, summary_table

    images, labelled = find_data(data)
    result = DemoResult(data=images, aligned=out / "aligned")
    console.rule(f"align {escape(str(images))}")
    console.print(summary_table(align_folder(images, result.aligned, workers=workers)))
    if not labelled:
        result.drawn = _predict(None, images, out, device)
        result.notes.append(f"{images} has no age labels in its file names: aligned, and predicted with the "
                            f"bundled model (pass --data with MORPH-style names SSSSSS_NNGAA.JPG to train "
                            f"and evaluate a model of your own).")
        return result
    result.manifest = _manifest(result.aligned, out)
    result.run = _train(result.manifest, result.aligned, out, recipe, epochs, device)
    result.report = _evaluate(result.run, out)
    result.drawn = _predict(result.run, images, out, device)
    return result


def _manifest(aligned: Path, out: Path) -> Path:
    from faceage.manifest.build import build_manifest, print_summary, write_manifest

    console.rule("manifest: MORPH II, subject-exclusive folds")
    path = out / "manifests" / "morph2" / "se.csv"
    manifest = build_manifest("morph2", "se", aligned)
    write_manifest(manifest, path)
    print_summary(manifest.summary, path)
    return path


def _train(manifest: Path, aligned: Path, out: Path, recipe: Path, epochs: int | None, device: str) -> Path:
    from faceage.train.fit import results_table, run_training
    from faceage.train.runs import resolve_run_config

    if not recipe.is_file():
        raise FaceageError(f"demo recipe {recipe} not found: run the demo from the repository root, or pass "
                           f"--recipe with a training recipe (see pipelines/).")
    console.rule(f"train ({escape(str(recipe))})")
    flags = {"manifest": str(manifest), "images": str(aligned), "out": str(out / "run"), "epochs": epochs,
             "device": device}
    cfg = resolve_run_config(recipe, flags, resume=True)
    console.print(results_table(run_training(cfg)))
    return cfg.run_dir()


def _evaluate(run: Path, out: Path) -> Path:
    from faceage.evaluate.report import console_table
    from faceage.evaluate.run import evaluate

    console.rule("eval")
    report = out / "report.md"
    result = evaluate([run], curve=out / "cs.png", report=report, json_path=out / "metrics.json")
    console.print(console_table(result.inputs))
    return report


def _predict(run: Path | None, images: Path, out: Path, device: str) -> Path:
    """Drawn copies and predict.csv for the first photos, with the run's model (None: the bundled one)."""
    from faceage.core.files import list_images
    from faceage.predict.estimator import load_estimator
    from faceage.predict.photos import predict_images
    from faceage.predict.summary import predictions_table

    console.rule(f"predict {PREDICT_IMAGES} photos" + (" with the bundled model" if run is None else ""))
    photos = [images / rel for rel in list_images(images)[:PREDICT_IMAGES]]
    drawn = out / "drawn"
    result = predict_images(load_estimator(run, device=device), photos, draw_dir=drawn,
                            out=out / "predict.csv")
    console.print(predictions_table(result.table, width=console.width, total=result.rows))
    return drawn
