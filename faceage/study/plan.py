"""What a study is: its losses × seeds, its run folders, its saved settings (study.yaml) and its folder.

```
studies/<name>/study.yaml          the settings the study was started with (a rerun must match them)
               <loss>-s<seed>/     one run folder of `faceage train` per (loss, seed)
               study.json, report.md, cs.png   the comparison, written together
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceage.core.atomic import is_temporary, write_text_atomic
from faceage.core.errors import FaceageError
from faceage.core.files import read_yaml_mapping
from faceage.core.lock import LOCK_FILE
from faceage.train.config import RUNTIME_FIELDS, TrainConfig, resolve_config

STUDY_YAML = "study.yaml"
STUDY_JSON = "study.json"
REPORT_MD = "report.md"
CS_PNG = "cs.png"
OUTPUTS = (STUDY_JSON, REPORT_MD, CS_PNG)
PER_RUN = ("loss", "seed", "out")  # set by the study for each run, never by the user
# runtime settings that may change between sessions of a study (fold picks what is compared: it stays)
MAY_CHANGE = RUNTIME_FIELDS - {"fold"}


@dataclass(frozen=True)
class StudySpec:
    """A study as the command line gives it: the recipe and train flags shared by every run, the losses
    and seeds to cross, the study folder, and the resamples of the comparison."""

    out: Path
    losses: list[str]
    seeds: list[int]
    recipe: Path | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)
    resamples: int = 2000

    def runs(self) -> list[tuple[str, int]]:
        """Every (loss, seed), losses outer, in the order given."""
        return [(loss, seed) for loss in self.losses for seed in self.seeds]

    def run_dir(self, loss: str, seed: int) -> Path:
        return self.out / run_name(loss, seed)

    def run_flags(self, loss: str, seed: int) -> dict[str, Any]:
        """The train flags of one run: the shared ones plus its loss, seed and run folder."""
        return {**self.flags, "loss": loss, "seed": seed, "out": str(self.run_dir(loss, seed))}


def run_name(loss: str, seed: int) -> str:
    return f"{loss}-s{seed}"


def parse_losses(text: str | None) -> list[str]:
    """`mv,softmax,l2` → the list (None: every registered loss); refuses an empty list, unknown or repeated
    losses."""
    from faceage.model.losses import LOSSES  # torch: a study trains

    if text is None:
        return list(LOSSES)
    losses = [item.strip() for item in text.split(",") if item.strip()]
    if not losses:
        raise FaceageError(f"--losses {text!r}: name at least one loss, e.g. --losses {','.join(LOSSES)}.")
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown:
        raise FaceageError(f"--losses {text!r}: unknown loss {', '.join(unknown)}; choose from "
                           f"{', '.join(LOSSES)}.")
    if len(set(losses)) != len(losses):
        raise FaceageError(f"--losses {text!r}: a loss is listed twice; list each once.")
    return losses


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` → the list; refuses an empty list, non-numbers, negatives and repeated seeds."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise FaceageError(f"--seeds {text!r}: give at least one seed, e.g. --seeds 0,1,2.")
    bad = [item for item in items if not item.isdigit()]
    if bad:
        raise FaceageError(f"--seeds {text!r}: {', '.join(bad)} is not a whole number ≥ 0; "
                           "e.g. --seeds 0,1,2.")
    seeds = [int(item) for item in items]
    if len(set(seeds)) != len(seeds):
        raise FaceageError(f"--seeds {text!r}: a seed is listed twice; each run needs its own seed.")
    return seeds


def shared_config(spec: StudySpec) -> TrainConfig:
    """The train settings every run shares (the recipe < the flags), checked as `faceage train` would."""
    given = [name for name in PER_RUN if spec.flags.get(name) is not None]
    if given:
        raise FaceageError(f"the study sets {', '.join(given)} of each run itself: use --losses, --seeds and "
                           "--out instead.")
    return resolve_config(spec.recipe, {**spec.flags, "loss": spec.losses[0], "seed": spec.seeds[0],
                                        "out": str(spec.run_dir(spec.losses[0], spec.seeds[0]))})


def study_settings(spec: StudySpec, cfg: TrainConfig) -> dict[str, Any]:
    """What study.yaml records and a rerun must repeat: losses, seeds and the shared train settings."""
    train = {k: v for k, v in cfg.to_dict().items() if k not in (*PER_RUN, *MAY_CHANGE)}
    return {"losses": list(spec.losses), "seeds": list(spec.seeds),
            "recipe": None if spec.recipe is None else str(spec.recipe.absolute()), "train": train}


def check_folder(spec: StudySpec) -> None:
    """Refuse an --out that is a file, or a folder holding things other than this study's."""
    out = spec.out
    if out.exists() and not out.is_dir():
        raise FaceageError(f"--out {out}: is a file, not a study folder; choose a folder path such as "
                           "studies/NAME.")
    if not out.is_dir():
        return
    ours = {STUDY_YAML, LOCK_FILE, *OUTPUTS, *(run_name(loss, seed) for loss, seed in spec.runs())}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours and not is_temporary(p.name))
    if others:
        listed = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        what = "this study's" if (out / STUDY_YAML).exists() else "a study's"
        raise FaceageError(f"--out {out}: the folder holds things that are not {what} ({listed}); choose an "
                           "empty or new folder, or move them aside.")


def check_settings(spec: StudySpec, settings: dict[str, Any]) -> None:
    """Save the settings on the study's first session; later sessions must repeat them."""
    path = spec.out / STUDY_YAML
    if not path.exists():
        write_text_atomic(path, yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        return
    saved = read_yaml_mapping(path, "study settings file")
    changed = [f"{key}: {saved.get(key)!r} → {settings[key]!r}" for key in ("losses", "seeds")
               if saved.get(key) != settings[key]]
    saved_train: dict[str, Any] = saved["train"] if isinstance(saved.get("train"), dict) else {}
    changed += [f"{key}: {saved_train.get(key)!r} → {value!r}" for key, value in settings["train"].items()
                if saved_train.get(key) != value]
    if changed:
        raise FaceageError(f"{path}: this study was started with other settings ({'; '.join(changed)}); "
                           "rerun it with the saved ones to resume it, or choose a new --out for a new "
                           "study.")

