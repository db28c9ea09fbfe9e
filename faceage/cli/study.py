"""`faceage study`: train losses × seeds of one recipe and say which loss wins (resumable)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from faceage.core.console import console

from .train import with_train_options


def _study_options(command: Callable[..., None]) -> Callable[..., None]:
    """`faceage train`'s options, but those the study sets per run."""
    return with_train_options(command, exclude=("loss", "seed", "out"))


@_study_options
def study_command(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Train recipe YAML shared by every run (pipelines/); flags override it.",
    )] = None,
    losses: Annotated[str | None, typer.Option(
        "--losses", help="Comma-separated losses to compare (`faceage doctor` lists the registered ones).",
        show_default="every registered loss")] = None,
    seeds: Annotated[str, typer.Option(
        "--seeds", help="Comma-separated seeds; each loss trains once per seed.")] = "0,1,2",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Study folder (default studies/<recipe name>): one run folder per loss and seed, "
                            "study.yaml, study.json, report.md, cs.png.", show_default=False)] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", help="Bootstrap draws and permutation-test sign flips of the comparison.")] = 2000,
    **settings: Any,
) -> None:
    """Train every (loss, seed) as `faceage train` would, then compare the losses: MAE, CS@5, ε-error
    (mean ± std over seeds), and per pair the MAE difference, its 95 % CI and p. Rerun to resume."""
    from faceage.core.errors import FaceageError
    from faceage.core.extras import require_extra

    require_extra("train", "faceage study")
    from faceage.evaluate.compare_report import comparison_tables
    from faceage.study.plan import StudySpec, parse_losses, parse_seeds
    from faceage.study.run import run_study

    if out is None:
        if config is None:
            raise FaceageError("--out: name the study folder, e.g. --out studies/NAME (or give --config, "
                               "whose name it then takes).")
        out = Path("studies") / config.stem
    spec = StudySpec(out=out, losses=parse_losses(losses), seeds=parse_seeds(seeds), recipe=config,
                     flags=settings, resamples=resamples)
    result = run_study(spec)
    for table in comparison_tables(result.comparison, f"study {out}"):
        console.print(table)
    for pair in result.comparison.pairs:
        console.print(escape(pair.verdict), highlight=False)
    console.print(f"trained {len(result.trained)} runs, {len(result.skipped)} finished earlier",
                  highlight=False)
    for path in result.written:
        console.print(f"wrote {escape(str(path))}", highlight=False)
