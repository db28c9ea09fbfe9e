"""Package namespaces whose public names load on first use (PEP 562), so that importing one module of a
package (`faceage.train.config` for the command line's options) does not import its heavy siblings (torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                                      Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: each public name in `exports` (name → submodule) is
    imported from `package.<submodule>` when first read."""

    def attribute(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def names() -> list[str]:
        return sorted(exports)

    return attribute, names
