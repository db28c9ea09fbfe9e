"""`faceage export`: a run's model (its folds averaged, or one fold) as an ONNX file, checked against torch.

The graph is `torch_model.FoldEnsemble` traced by torch's exporter (torch.export + onnxscript): input
"input" (N, 3, img_size, img_size) float32, the normalised crop `estimator.preprocess` makes, with a dynamic
batch axis; outputs "probs" (N, 101), "mean" (N,), "std" (N,), or "mean" and a zero "std" for the l2
model. The settings predict needs (sizes, backbone, loss, folds) ride along as metadata. The file is written
in a hidden folder beside the target and renamed into place only after onnxruntime on the CPU reproduced
torch's fp32 outputs on real aligned faces.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from faceage.align.detect import onnx_session
from faceage.core.atomic import (
    OutputError,
    hidden_name,
    output_error,
    remove_temporaries_of,
    temporary_affixes,
)
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.extras import require_extra
from faceage.core.files import list_images
from faceage.core.imageio import decode_image
from faceage.core.lock import folder_lock
from faceage.core.outputs import check_output, check_writable
from faceage.predict.estimator import preprocess
from faceage.predict.info import ModelInfo, output_names
from faceage.predict.onnx_model import onnx_metadata
from faceage.predict.options import recorded_alignment
from faceage.predict.torch_model import FoldEnsemble, TorchEstimator, load_ensemble

PARITY_TOLERANCE = 1e-4  # max |Δ| of the probabilities (of the mean for l2), onnxruntime CPU vs torch fp32
CHECK_FACES = 8
# Above this the weights go to `<name>.onnx.data` beside the graph (protobuf files stop at 2 GB; five
# VGG-16 folds are 2.7 GB). The exporter itself switches at 1.5 GiB; this keeps the choice ours.
EXTERNAL_DATA_BYTES = 1 << 30
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    """Where the model went, and how closely onnxruntime reproduced torch on `faces` real aligned faces."""

    path: Path
    info: ModelInfo
    faces: int
    max_abs_diff: float  # CPU provider
    cuda_max_abs_diff: float | None  # CUDA provider, when this onnxruntime has it


def export_onnx(run: str | Path, out: str | Path, fold: int | None = None, opset: int = DEFAULT_OPSET,
                faces: str | Path | None = None) -> ExportResult:
    """Export `run` (a run folder or checkpoint) to `out`; refuse to write it if parity fails."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise FaceageError(f"--onnx {out}: name the file *.onnx.")
    if not 13 <= opset <= 23:
        raise FaceageError(f"--opset {opset}: choose an ONNX opset from 13 to 23 (default {DEFAULT_OPSET}).")
    require_extra("export", "ONNX export")
    check_output(out, "--onnx")
    check_writable(out, "--onnx")
    ensemble, info = load_ensemble(run, fold)
    info = replace(info, alignment=recorded_alignment(info))  # the file carries how training aligned faces
    x = check_faces(info, faces)
    prefix, suffix = temporary_affixes(out)
    with folder_lock(out.parent, f"the ONNX file {out.name}", name=hidden_name(out, "faceage.lock")), \
            _staged(out, prefix, suffix[:4]) as folder:
        staged = Path(folder) / out.name  # the final name: an external .data file is found by it
        write_onnx(ensemble.cpu(), info, x[:2], staged, opset)
        diff = parity(ensemble, info, x, staged, "cpu")
        if not diff < PARITY_TOLERANCE:
            raise FaceageError(f"{out}: onnxruntime differs from torch by {diff:.2e} (limit "
                               f"{PARITY_TOLERANCE:g}) on {len(x)} aligned faces; nothing was written. "
                               f"Try another --opset.")
        cuda = _cuda_parity(ensemble, info, x, staged)
        data = staged.with_name(staged.name + ".data")
        if data.exists():
            os.replace(data, out.with_name(data.name))
        os.replace(staged, out)  # last, so a complete model file never points at missing weights
    log.info("exported %s (folds %s) to %s; onnxruntime vs torch max |Δ| %.1e on %d faces", info.source,
             list(info.folds), out, diff, len(x))
    return ExportResult(out, info, len(x), diff, cuda)


@contextlib.contextmanager
def _staged(out: Path, prefix: str, suffix: str) -> Iterator[str]:
    """A hidden staging folder beside `out` (removed afterwards, and any a killed export into `out` left:
    the caller holds `out`'s lock); a failed write names `out` and the fix."""
    remove_temporaries_of(out)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=prefix, suffix=suffix) as folder:
            yield folder
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(out, exc) from exc


def check_faces(info: ModelInfo, faces: str | Path | None = None, limit: int = CHECK_FACES) -> np.ndarray:
    """Up to `limit` real aligned faces (from `faces`, else the run's aligned folder), decoded as training's
    cache does and normalised: the parity check's input."""
    folder = Path(faces).expanduser() if faces is not None else Path(info.aligned) if info.aligned else None
    if folder is None or not folder.is_dir():
        raise FaceageError(f"no aligned faces to check the export on ({folder or 'the run names no folder'}"
                           f" is not a folder); pass --faces DIR with a few aligned face images.")
    files = [folder / rel for rel in list_images(folder)[:limit]]
    if not files:
        raise FaceageError(f"{folder}: no aligned face images to check the export on; pass --faces DIR.")
    try:
        crops = [decode_image(file, info.resize) for file in files]
    except FaceageError as exc:  # decode_image names the file and why
        raise FaceageError(f"{folder}: cannot decode an aligned face ({exc}); pass --faces DIR with "
                           f"decodable aligned faces.") from exc
    return preprocess(crops, info)


def write_onnx(ensemble: FoldEnsemble, info: ModelInfo, example: np.ndarray, target: Path,
               opset: int) -> None:
    """Trace `ensemble` on `example` and write the graph (batch axis dynamic, outputs named) to `target`."""
    names = output_names(info)
    batch = torch.export.Dim("batch", min=1)
    with _exporter_quiet():
        program = torch.onnx.export(
            ensemble.eval(), (torch.from_numpy(example),), None, dynamo=True, input_names=["input"],
            dynamic_shapes=({0: batch},), opset_version=opset, verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    graph = program.model.graph
    for node in graph:  # free the output names where inner values carry them (a pooling "mean")
        for value in node.outputs:
            if value.name in names and value not in graph.outputs:
                value.name = f"{value.name}_inner"
    for value, name in zip(graph.outputs, names, strict=True):
        value.name = name
    program.model.metadata_props.update(onnx_metadata(info))
    weights = sum(p.numel() * p.element_size() for p in ensemble.parameters())
    program.save(str(target), external_data=weights > EXTERNAL_DATA_BYTES)


def parity(ensemble: FoldEnsemble, info: ModelInfo, x: np.ndarray, onnx_file: Path, device: str) -> float:
    """Max |Δ| between torch (fp32, CPU) and onnxruntime on `device` for the probabilities (l2: the mean)."""
    expected = TorchEstimator(ensemble, info, "cpu").estimate(x)
    session = onnx_session(onnx_file, "exported model", "the file just exported", device=device)
    got = dict(zip(output_names(info), session.run(output_names(info), {"input": x}), strict=True))
    key = "probs" if info.distribution else "mean"
    reference = expected.probs if info.distribution else expected.mean
    return float(np.abs(got[key].astype(np.float64) - np.asarray(reference)).max())


def _cuda_parity(ensemble: FoldEnsemble, info: ModelInfo, x: np.ndarray, onnx_file: Path) -> float | None:
    """`parity` on onnxruntime's CUDA provider where this build has it and it starts (else None, with a
    warning saying why), so the figure reported as CUDA's never comes from a CPU fallback."""
    from faceage.align.detect.onnx import CUDA, available_providers

    if CUDA not in available_providers():
        return None
    try:
        return parity(ensemble, info, x, onnx_file, "cuda")
    except FaceageError as exc:  # the CPU pass loaded the same file: the CUDA provider did not start
        log.warning("%s The CUDA provider's difference is not reported.", exc)
        return None


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """Keep the exporter's progress lines and deprecation chatter off the console (errors still raise)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(previous)
