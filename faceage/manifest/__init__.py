"""The manifest stage: reads a dataset's labels and aligned/faces.csv, writes
manifests/<dataset>/<protocol>.csv (path, age, age_std, subject, fold, val_fold) for the rs, se, lopo and
official protocols; train and eval read manifests back with `read_manifest`. No torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
