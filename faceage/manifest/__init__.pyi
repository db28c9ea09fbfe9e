"""Typed public names of faceage.manifest (loaded on first use by `__init__.py`)."""

from .build import (
    build_manifest as build_manifest,
    print_summary as print_summary,
    write_manifest as write_manifest,
)
from .datasets import (
    DATASETS as DATASETS,
    CsvColumns as CsvColumns,
    LabelOptions as LabelOptions,
    load_labels as load_labels,
)
from .protocols import (
    PROTOCOLS as PROTOCOLS,
    FoldSplit as FoldSplit,
    assign_folds as assign_folds,
    fold_ids as fold_ids,
    split_for_fold as split_for_fold,
)
from .read import read_manifest as read_manifest
