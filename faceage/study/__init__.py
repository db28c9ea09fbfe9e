"""The study stage: trains every (loss, seed) of a recipe through `faceage train`'s code into
studies/<name>/<loss>-s<seed>/, then compares the losses over their seeds (faceage.evaluate.compare) and
writes studies/<name>/study.yaml (its settings), study.json, report.md and cs.png; resumable.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
