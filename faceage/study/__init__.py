"""The study stage: trains every (loss, seed) of a recipe through `faceage train`'s code into
studies/<name>/<loss>-s<seed>/, then compares the losses over their seeds (faceage.evaluate.compare) and
writes studies/<name>/study.yaml (its settings), study.json, report.md and cs.png; resumable.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "StudySpec": "plan",
    "parse_losses": "plan",
    "parse_seeds": "plan",
    "run_study": "run",
    "StudyResult": "run",
    "StudyInterruptedError": "run",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
