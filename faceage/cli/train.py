"""`faceage train`, and its options: one per TrainConfig field, declared there once (study shares them)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any

import typer

from faceage.core.console import console
from faceage.core.extras import require_extra


def with_train_options(command: Callable[..., None], exclude: Collection[str] = ()) -> Callable[..., None]:
    """Give `command` one option per TrainConfig setting (but those in `exclude`): flag, type, help and
    shown default all come from the dataclass (`faceage.train.config`), so a setting is declared once. Each
    arrives as a keyword argument, None when the flag was not given (the recipe or the saved run then
    decides). `faceage study` uses it too, without the settings it sets per run."""
    from faceage.train.config import TrainConfig, field_type

    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for setting in (s for s in dataclasses.fields(TrainConfig) if s.name not in exclude):
        kind, _ = field_type(setting.name)
        flag = "--" + setting.name.replace("_", "-")
        names = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        names += [setting.metadata["flag"]] if setting.metadata.get("flag") else []
        shown = setting.default if setting.default is not None else False
        option = typer.Option(*names, help=setting.metadata["help"],
                              show_default=False if shown is False else str(shown))
        cli_kind = str if setting.name == "fold" else kind  # `--fold k|all`
        params.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[cli_kind | None, option]))
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command



@with_train_options
def train_command(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Recipe YAML (pipelines/): overrides the defaults; flags override it.",
    )] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    **settings: Any,
) -> None:
    """Train each test fold of a manifest (or one); the best epoch on validation predicts the test fold."""
    require_extra("train", "faceage train")
    from faceage.train.fit import results_table, run_training
    from faceage.train.runs import resolve_run_config

    result = run_training(resolve_run_config(config, settings, resume))
    if result.main:
        console.print(results_table(result))
