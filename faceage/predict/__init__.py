"""Photos (+ a run, checkpoint or ONNX file) → ages; ONNX export; drawn copies. Never imports train."""
