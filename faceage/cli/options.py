"""Options that several commands take, declared once as `Annotated` aliases (flag, help, shown default).

An alignment option's help and default are those of its `AlignSettings` field and the device's words are
`faceage.core.device`'s, so no default or help is repeated here. `align_option` declares the option of one
AlignSettings field; in predict, the same option defaults to what the model records instead.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from faceage.align.settings import AlignSettings
from faceage.core.device import DEVICE_HELP

ALIGN = AlignSettings()  # align's defaults; predict falls back to them where the model records none
_FIELDS = {f.name: f for f in dataclasses.fields(AlignSettings)}


def align_option(name: str, *flags: str, recorded: bool = False) -> Any:
    """The option of AlignSettings field `name`: `flags` (default --name), the field's help, and its default
    shown; `recorded`: the default is what the model records, else the field's."""
    default = getattr(ALIGN, name)
    shown = f"as the model records, else {'none' if default is None else default}" if recorded else True
    return typer.Option(*(flags or ("--" + name.replace("_", "-"),)), help=_FIELDS[name].metadata["help"],
                        show_default=shown)


DEFAULT_DEVICE = ALIGN.device  # auto: where every stage runs unless told
Device = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
Workers = Annotated[int | None, typer.Option(
    "--workers", "-j", help="Align worker processes, one detector thread each.", show_default="all cores")]
