"""Typed public names of faceage.align (loaded on first use by `__init__.py`)."""

from .faces import FoundFace as FoundFace, FoundFaces as FoundFaces, find_faces as find_faces
from .geometry import align_face as align_face, choose as choose, locate as locate, template as template
from .plan import parse_shard as parse_shard
from .record import (
    read_align_record as read_align_record,
    settings_from_record as settings_from_record,
    write_align_record as write_align_record,
)
from .run import (
    AlignInterruptedError as AlignInterruptedError,
    AlignSummary as AlignSummary,
    align_folder as align_folder,
    summary_table as summary_table,
)
from .settings import AlignSettings as AlignSettings
