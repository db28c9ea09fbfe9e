"""What every stage shares, and nothing else: errors, the console and progress bar, atomic writes, image
loading, the one folder walk, the table contracts and the stage file names.

Reads and writes nothing of its own; imports no other faceage package, and never torch.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "FaceageError": "errors",
    "console": "console",
    "log": "console",
    "setup_logging": "console",
    "progress_bar": "console",
    "atomic_path": "atomic",
    "write_bytes_atomic": "atomic",
    "write_text_atomic": "atomic",
    "write_csv_atomic": "atomic",
    "load_rgb": "imageio",
    "ImageLoadError": "imageio",
    "decode_image": "imageio",
    "resize_square": "imageio",
    "is_image_name": "imageio",
    "list_images": "files",
    "read_yaml_mapping": "files",
    "FACES": "schema",
    "LABELS": "schema",
    "MANIFEST": "schema",
    "PREDICTIONS": "schema",
    "FACE_PREDICTIONS": "schema",
    "TableError": "schema",
    "read_table": "schema",
    "validate": "schema",
    "FACES_CSV": "layout",
    "PREDICTIONS_CSV": "layout",
    "RUN_CONFIG": "layout",
    "aligned_relpath": "layout",
    "default_manifest_path": "layout",
    "output_names": "layout",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
