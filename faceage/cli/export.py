"""`faceage export`: a run's model as ONNX, checked against torch (faceage.predict.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceage.core.console import console
from faceage.core.extras import require_extra


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
    require_extra("export", "faceage export")
    from faceage.predict.export import PARITY_TOLERANCE, export_onnx

    result = export_onnx(run, onnx, fold=fold, opset=opset, faces=faces)
    cuda = "" if result.cuda_max_abs_diff is None else f", CUDA {result.cuda_max_abs_diff:.1e}"
    console.print(f"wrote {escape(str(result.path))} (folds {list(result.info.folds)}); onnxruntime vs torch "
                  f"on {result.faces} aligned faces: max |Δ| CPU {result.max_abs_diff:.1e}{cuda} "
                  f"(limit {PARITY_TOLERANCE:g})", highlight=False)
