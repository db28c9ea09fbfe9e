"""`faceage study`: train every (loss, seed) of a study through `faceage train`'s code, then compare them.

Each run is `run_training` on the config `resolve_run_config` gives `faceage train --resume` with that
run's loss, seed and folder: a finished run (every fold predicted) is skipped, an interrupted one continues
to the same result as an uninterrupted one, a new one starts. The study folder's lock is held throughout, so
a second study into it is refused. The comparison (`faceage.evaluate.compare`) is written last, study.json,
report.md and cs.png together (all three or none).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from faceage.core.atomic import atomic_path, is_temporary
from faceage.core.console import log
from faceage.core.errors import FaceageError, StageInterruptedError
from faceage.core.layout import PREDICTIONS_CSV, RUN_CONFIG
from faceage.core.lock import folder_lock
from faceage.core.schema import PREDICTIONS, read_table
from faceage.evaluate.compare import Comparison, Member, compare_groups
from faceage.evaluate.compare_report import comparison_markdown, mean_cs_plot
from faceage.manifest.protocols import fold_ids
from faceage.manifest.read import read_manifest
from faceage.study.plan import (
    CS_PNG,
    REPORT_MD,
    STUDY_JSON,
    STUDY_YAML,
    StudySpec,
    check_folder,
    check_settings,
    run_name,
    shared_config,
    study_settings,
)
from faceage.train.config import TrainConfig, load_saved_config, resolve_config, resume_conflicts
from faceage.train.fit import run_training
from faceage.train.job import RunInterruptedError
from faceage.train.runs import RunFolder, resolve_run_config


class StudyInterruptedError(StageInterruptedError):
    """Ctrl-C stopped the study; the same command resumes it."""


@dataclass(frozen=True)
class StudyResult:
    """The comparison, the runs trained in this session and those skipped, and the files written."""

    comparison: Comparison
    trained: list[str]
    skipped: list[str]
    written: list[Path]


def _is_main() -> bool:
    """Rank 0 of a torchrun job (or a plain process): the one that locks and writes the study folder."""
    return os.environ.get("RANK", "0") == "0"


def run_finished(cfg: TrainConfig) -> bool:
    """Whether the run folder holds a finished run: its config, merged predictions and every fold it
    trains predicted after all its epochs."""
    run = RunFolder(cfg.run_dir(), writer=False)
    if not ((run.root / RUN_CONFIG).is_file() and (run.root / PREDICTIONS_CSV).is_file()):
        return False
    folds = [cfg.fold] if cfg.fold is not None else fold_ids(read_manifest(cfg.manifest_path()))
    return all(run.fold_finished(k, cfg.epochs) for k in folds)


def run_study(spec: StudySpec) -> StudyResult:
    """Train what is left of the study, then compare every loss over its seeds and write the outputs."""
    check_folder(spec)
    settings = study_settings(spec, shared_config(spec))
    hold = folder_lock(spec.out, "the study folder") if _is_main() else contextlib.nullcontext()
    with hold:
        if _is_main():
            check_folder(spec)  # again under the lock: another study may have written meanwhile
            check_settings(spec, settings)
            for leftover in spec.out.iterdir():  # only the study's own level: runs clean their folders
                if is_temporary(leftover.name) and leftover.is_file():
                    leftover.unlink(missing_ok=True)
        try:
            trained, skipped = _train_runs(spec)
            comparison = compare_groups(_members(spec), group_by="loss", resamples=spec.resamples)
            written = _write_outputs(spec, settings, comparison) if _is_main() else []
        except KeyboardInterrupt:  # between runs or while comparing (the outputs are written all or none)
            raise StudyInterruptedError(f"study {spec.out} interrupted; the finished runs stay: run the same "
                                        "`faceage study` command again to resume.") from None
    return StudyResult(comparison, trained, skipped, written)


def _check_planned(spec: StudySpec, loss: str, seed: int) -> None:
    """Refuse a run folder whose saved settings are not the ones the study plans for it (a run trained by
    hand into the study folder, say): counting it would compare another experiment."""
    saved_path = spec.run_dir(loss, seed) / RUN_CONFIG
    if not saved_path.is_file():
        return
    planned = resolve_config(spec.recipe, spec.run_flags(loss, seed))
    differ = resume_conflicts(planned, load_saved_config(saved_path))
    if differ:
        raise FaceageError(f"{saved_path.parent}: this run was trained with other settings than the study "
                           f"plans for it ({'; '.join(differ)[:300]}); move it aside, then rerun the study "
                           f"to train it as planned.")


def _train_runs(spec: StudySpec) -> tuple[list[str], list[str]]:
    """Train (or continue) every run not yet finished, in order; Ctrl-C leaves a resumable study."""
    trained, skipped = [], []
    runs = spec.runs()
    started = time.monotonic()
    for i, (loss, seed) in enumerate(runs, 1):
        name = run_name(loss, seed)
        _check_planned(spec, loss, seed)
        cfg = resolve_run_config(spec.recipe, spec.run_flags(loss, seed), resume=True)
        if run_finished(cfg):
            log.info("study %s [%d/%d] %s: finished earlier, skipped", spec.out, i, len(runs), name)
            skipped.append(name)
            continue
        log.info("study %s [%d/%d] %s: training (%s loss, seed %d; %.0f s into the study)", spec.out, i,
                 len(runs), name, loss, seed, time.monotonic() - started)
        try:
            run_training(cfg)
        except (RunInterruptedError, KeyboardInterrupt) as exc:
            raise StudyInterruptedError(
                f"study {spec.out} stopped in run {name} ({i}/{len(runs)}; {exc or 'Ctrl-C'}); the finished "
                "runs and the last saved epoch stay: run the same `faceage study` command again to resume."
            ) from None
        trained.append(name)
    return trained, skipped


def _members(spec: StudySpec) -> dict[str, list[Member]]:
    """Each loss's runs with their test predictions."""
    groups: dict[str, list[Member]] = {}
    for loss, seed in spec.runs():
        table = read_table(spec.run_dir(loss, seed) / PREDICTIONS_CSV, PREDICTIONS)
        groups.setdefault(loss, []).append(Member(run_name(loss, seed), seed, table))
    return groups


def _report(spec: StudySpec, comparison: Comparison) -> str:
    recipe = f"`{spec.recipe}`" if spec.recipe is not None else "none (the defaults and flags)"
    lines = [f"# Study {spec.out.name}", "",
             f"Recipe {recipe}; losses {', '.join(spec.losses)}; seeds {', '.join(map(str, spec.seeds))}; "
             f"one run folder per loss and seed in `{spec.out}` (`<loss>-s<seed>/`). Settings: "
             f"`{STUDY_YAML}`.", "", f"![Cumulative score, mean over seeds]({CS_PNG})", ""]
    return "\n".join(lines) + "\n" + comparison_markdown(comparison, level=2).rstrip("\n") + "\n"


def _write_outputs(spec: StudySpec, settings: dict[str, object], comparison: Comparison) -> list[Path]:
    """study.json, report.md and cs.png, each to a temporary first and then renamed together: a failure
    leaves none of them new."""
    body = {"study": {"out": str(spec.out.absolute()), **settings}, **comparison.to_dict()}
    text = json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    contents = {
        spec.out / STUDY_JSON: text.encode(),
        spec.out / REPORT_MD: _report(spec, comparison).encode(),
        spec.out / CS_PNG: mean_cs_plot(comparison.groups),
    }
    with contextlib.ExitStack() as stack:
        for target, data in contents.items():
            stack.enter_context(atomic_path(target)).write_bytes(data)
    return list(contents)
