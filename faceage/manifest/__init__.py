"""The manifest stage: reads a dataset's labels and aligned/faces.csv, writes
manifests/<dataset>/<protocol>.csv (path, age, age_std, subject, fold, val_fold) for the rs, se, lopo and
official protocols; train and eval read manifests back with `read_manifest`. No torch.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "build_manifest": "build",
    "write_manifest": "build",
    "print_summary": "build",
    "read_manifest": "read",
    "load_labels": "datasets",
    "LabelOptions": "datasets",
    "CsvColumns": "datasets",
    "DATASETS": "datasets",
    "assign_folds": "protocols",
    "split_for_fold": "protocols",
    "fold_ids": "protocols",
    "FoldSplit": "protocols",
    "PROTOCOLS": "protocols",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
