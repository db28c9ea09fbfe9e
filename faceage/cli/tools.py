"""Commands around the stages: demo (the main job end to end) and doctor (what this installation runs on)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceage.core.console import console
from faceage.core.extras import require_extra

from .options import DEFAULT_DEVICE, Device, Workers


def doctor_command() -> None:
    """Versions, onnxruntime providers, torch devices and where the detector models come from."""
    from faceage.doctor import collect, render

    console.print(render(collect()))


def demo_command(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Images with MORPH-style names (default: $FACEAGE_DATA, else "
        "../shared/data/morph_subset/images, else insightface's sample photos, aligned only).",
    )] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for every stage's output.")] = Path("demo_out"),
    recipe: Annotated[Path, typer.Option("--recipe", help="Training recipe of the demo run.")] = Path(
        "pipelines/demo-morph_subset-lite0.yaml"),
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override the recipe's epochs.")] = None,
    device: Device = DEFAULT_DEVICE,
    workers: Workers = None,
) -> None:
    """The main job on demo data: align → manifest → train → eval → predict; a rerun resumes."""
    require_extra("train", "faceage demo (it trains)")
    from faceage.demo import run_demo

    result = run_demo(data, out, recipe, epochs, device, workers)
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    console.rule("results")
    for name, path in (("aligned faces", result.aligned), ("manifest", result.manifest), ("run", result.run),
                       ("report", result.report), ("drawn predictions", result.drawn)):
        if path is not None:
            console.print(f"{name}: {escape(str(path))}", highlight=False)
