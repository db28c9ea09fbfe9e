"""An int8 copy of the bundled model, and the measurement that decides whether it may replace the float one.

    python pipelines/bundled/quantize.py --data ../shared/data --out work/bundled/int8.onnx

Static QDQ quantization with onnxruntime's tools (weights int8 per channel, activations uint8 from the
99.99th percentile of the calibration faces; each age head and everything fed by it stay float), calibrated
on faces of the training parts only (prepare.py's splits). Then both models predict every held-out face of
every source through `faceage predict`'s own path (detect, align, preprocess, model), and the script prints
per source the MAE, the ChaLearn ε-error, the shares within 1 and 2 predicted stds, and the model's time per
face for each. The float model stays bundled unless the int8 one is at most 0.05 years worse on every source
and keeps the shares.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from rich.table import Table
from splits import predicted, split_rows

from faceage.core.atomic import atomic_path
from faceage.core.console import console
from faceage.evaluate.metrics import calibrate, epsilon_error, mae
from faceage.zoo import bundled_model

HERE = Path(__file__).resolve().parent
BATCH = 8  # calibration batch: every batch the same size (the percentile calibrator needs it)


class _Faces(CalibrationDataReader):
    """Preprocessed faces in batches of BATCH, as the model sees them."""

    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter(x[i:i + BATCH] for i in range(0, len(x) - len(x) % BATCH, BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch}


def calibration_inputs(model: Path, rows: pd.DataFrame, per_source: int) -> np.ndarray:
    """`model`'s inputs for `per_source` training faces of each source (spread over the names), aligned and
    preprocessed as predict does."""
    from faceage.align.detect import make_detector
    from faceage.align.faces import find_faces
    from faceage.core.imageio import load_rgb
    from faceage.predict.estimator import load_estimator, preprocess
    from faceage.predict.options import PredictOptions, alignment_for

    estimator = load_estimator(str(model), device="cpu")
    settings = alignment_for(estimator.info, PredictOptions())
    detector = make_detector(settings.detector, settings.model, 2, "cpu", settings.score_threshold)
    crops = []
    for _, part in rows[rows["split"] == "train"].groupby("source"):
        for file in part["file"].iloc[np.linspace(0, len(part) - 1, per_source).round().astype(int)]:
            found = find_faces(detector, load_rgb(file), settings, "largest")
            crops += [face.crop for face in found.faces if face.crop is not None]
    return preprocess(crops, estimator.info)


def quantize(source: Path, target: Path, x: np.ndarray) -> None:
    """Write the int8 copy of `source` to `target`, its metadata kept."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        head = head_nodes(onnx.load(str(prepared)).graph)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), _Faces(x), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=head, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})
        model, original = onnx.load(str(quantized)), onnx.load(str(source))
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    with atomic_path(target) as partial:  # a file at `target` is always whole
        onnx.save(model, str(partial))


def head_nodes(graph: onnx.GraphProto) -> list[str]:
    """The age heads (the graph's Gemm nodes: one per member of an ensemble) and every node fed by one: the
    softmax, the averages and the statistics, which stay float."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    found: set[str] = set()
    todo = [node for node in graph.node if node.op_type == "Gemm"]
    if not todo:
        raise SystemExit("the model has no age head (Gemm node) to keep float; is it a faceage export?")
    while todo:
        node = todo.pop()
        if node.name not in found:
            found.add(node.name)
            todo += [after for name in node.output for after in consumers[name]]
    return [node.name for node in graph.node if node.name in found]


def model_ms_per_face(path: Path, x: np.ndarray) -> float:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(path), options)
    session.run(None, {"input": x[:32]})
    start = time.perf_counter()
    for _ in range(5):
        session.run(None, {"input": x[:32]})
    return 1000 * (time.perf_counter() - start) / (5 * len(x[:32]))


def held_out_scores(path: Path, rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per source: MAE, ε-error (where crowd stds exist) and the shares within 1 and 2 stds."""
    held = rows[rows["split"] == "test"]
    scores = {}
    for source, part in predicted(path, held).groupby("source"):
        shares = calibrate(part["mean"], part["age"], part["std"], "mean")
        crowd = part["age_std"].notna().all()  # the ChaLearn sources carry crowd stds
        eps = epsilon_error(part["pred"], part["age"], part["age_std"]).value if crowd else None
        scores[source] = {"faces": len(part), "of": int((held["source"] == source).sum()),
                          "mae": mae(part["pred"], part["age"]), "eps": eps,
                          "within_1std": shares.within_1std, "within_2std": shares.within_2std}
    return scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    p.add_argument("--float", dest="float_model", type=Path, default=None,
                   help="the float .onnx to quantize (`faceage export`'s; default: the bundled file)")
    p.add_argument("--out", type=Path, required=True, help="the int8 .onnx to write")
    p.add_argument("--calibration", type=int, default=40,
                   help="training faces per source (default 40; onnxruntime's calibrator holds every "
                        "activation of every face in memory: 120 faces take about 6 GB)")
    args = p.parse_args()
    rows = split_rows(args.data)
    float_model = args.float_model or bundled_model()
    x = calibration_inputs(float_model, rows, args.calibration)
    quantize(float_model, args.out, x)
    table = Table(title=f"bundled model, float against int8 ({len(x)} calibration faces), held-out parts")
    for name in ("model", "source", "faces", "MAE", "ε-error", "within 1 / 2 std", "model ms/face"):
        table.add_column(name, justify="left" if name in ("model", "source") else "right")
    for name, path in (("float", float_model), ("int8", args.out)):
        ms = model_ms_per_face(path, x)
        for source, s in held_out_scores(path, rows).items():
            eps = "" if s["eps"] is None else f"{s['eps']:.3f}"
            table.add_row(name, source, f"{s['faces']}/{s['of']}", f"{s['mae']:.3f}", eps,
                          f"{100 * s['within_1std']:.1f} / {100 * s['within_2std']:.1f} %", f"{ms:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
