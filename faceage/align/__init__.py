"""The align stage: reads raw/ images (never writes there) and writes aligned/<same relative path>.jpg
crops and aligned/faces.csv (one row per image: status, score, box, five landmarks, error). No torch.

`find_faces` is the per-face routine that predict calls too, so photos are aligned as training faces were.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
