"""Typed public names of faceage.core (loaded on first use by `__init__.py`)."""

from .atomic import (
    atomic_path as atomic_path,
    write_bytes_atomic as write_bytes_atomic,
    write_csv_atomic as write_csv_atomic,
    write_text_atomic as write_text_atomic,
)
from .console import (
    console as console,
    log as log,
    progress_bar as progress_bar,
    setup_logging as setup_logging,
)
from .device import Device as Device, parse_device as parse_device
from .errors import FaceageError as FaceageError, StageInterruptedError as StageInterruptedError
from .files import list_images as list_images, read_yaml_mapping as read_yaml_mapping
from .imageio import (
    ImageLoadError as ImageLoadError,
    decode_image as decode_image,
    is_image_name as is_image_name,
    load_rgb as load_rgb,
    resize_square as resize_square,
)
from .layout import (
    ALIGN_RECORD as ALIGN_RECORD,
    FACES_CSV as FACES_CSV,
    PREDICTIONS_CSV as PREDICTIONS_CSV,
    RUN_CONFIG as RUN_CONFIG,
    aligned_relpath as aligned_relpath,
    default_manifest_path as default_manifest_path,
    output_names as output_names,
)
from .schema import (
    FACE_PREDICTIONS as FACE_PREDICTIONS,
    FACES as FACES,
    LABELS as LABELS,
    MANIFEST as MANIFEST,
    PREDICTIONS as PREDICTIONS,
    TableError as TableError,
    read_table as read_table,
    validate as validate,
)
