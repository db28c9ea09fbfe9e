"""Photos → ages: reads images and a model (a run folder, a checkpoint or an exported ONNX file), writes
the face predictions table (.csv/.json) and drawn copies; `export_onnx` writes a run as ONNX, checked
against torch. Never imports train.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
