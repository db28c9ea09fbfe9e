"""The bundled model's splits of every source (prepare.py's seeds: train, valid and the held-out test part),
with each image's file, and a model's predictions of them through `faceage predict`'s own path, for the
scripts that measure or tune the shipped model (quantize.py, calibrate_bands.py, editions.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from faceage.predict.onnx_model import load_onnx
from faceage.predict.photos import predict_images

HERE = Path(__file__).resolve().parent


def _prepare_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("prepare", HERE / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_rows(data: Path) -> pd.DataFrame:
    """Every labelled image of every source with its split (prepare.py's seeds) and its file."""
    prepare = _prepare_module()
    parts = []
    for offset, (name, (folder, images, labels)) in enumerate(prepare.SOURCES.items()):
        table = pd.read_csv(data / folder / labels, dtype={"subject_id": str})
        rows = prepare.source_labels(name, table)
        rows["split"] = prepare.assign_splits(rows, prepare.SEED + 10 * offset).to_numpy()
        rows["file"] = [data / folder / images / p.split("/", 1)[1] for p in rows["path"]]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def predicted(model: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` joined with the model's pred, mean and std of the first face found in each image (rows whose
    image gave no usable face are left out: compare `len` with `rows` to count them)."""
    result = predict_images(load_onnx(model, "cpu", threads=2), list(rows["file"]), progress=False)
    faces = result.table[result.table["status"] == "ok"].drop_duplicates("path")
    return rows.assign(key=rows["file"].astype(str)).merge(faces, left_on="key", right_on="path",
                                                           suffixes=("", "_photo"))
