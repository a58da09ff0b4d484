"""Names a package re-exports, imported on first use (PEP 562 module ``__getattr__``).

A package whose ``__init__`` re-exports its heavy modules makes every import of a light
sibling pay for them: ``import millrace.pipeline.restore.config`` (a pydantic model the
configuration needs) ran the restore task's whole import chain (pyarrow.compute, fsspec,
the processors). With ``__getattr__ = lazy_exports(__name__, {...})`` the package's
names resolve when first read, and ``from package import Name`` works as before; the
package keeps the same imports under ``TYPE_CHECKING`` so that type checkers see them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each exported name to the
    submodule (relative to ``package``) that defines it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # once: later reads find it in the module
        return value

    return __getattr__
