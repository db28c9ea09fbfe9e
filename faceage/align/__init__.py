"""The align stage: reads raw/ images (never writes there) and writes aligned/<same relative path>.jpg
crops and aligned/faces.csv (one row per image: status, score, box, five landmarks, error). No torch.

`find_faces` is the per-face routine that predict calls too, so photos are aligned as training faces were.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "align_folder": "run",
    "AlignSummary": "run",
    "AlignInterruptedError": "run",
    "summary_table": "run",
    "AlignSettings": "settings",
    "find_faces": "faces",
    "FoundFace": "faces",
    "FoundFaces": "faces",
    "locate": "geometry",
    "choose": "geometry",
    "align_face": "geometry",
    "template": "geometry",
    "parse_shard": "plan",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
