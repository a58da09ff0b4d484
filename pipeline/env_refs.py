"""``${NAME}`` references to environment variables: how secrets are written where they
must not be stored (commissioning files, restore URLs).

A reference is resolved by the process that uses the value, from its own environment:
the file or the event that holds it carries the name, never the secret.
(``connectors.commissioning`` substitutes them in commissioning files; the restore
task runner in the credentials of a restore URL, ``pipeline.restore.urls``.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_env(doc: Any, env: Mapping[str, str]) -> Any:
    """``${NAME}`` replaced by ``env[NAME]`` in every string (unset ones left as is)."""
    if isinstance(doc, str):
        return ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), doc)
    if isinstance(doc, Mapping):
        return {k: substitute_env(v, env) for k, v in doc.items()}
    if isinstance(doc, list):
        return [substitute_env(v, env) for v in doc]
    return doc


def env_names(text: str) -> list[str]:
    """The variables ``text`` references, in order."""
    return [m.group(1) for m in ENV_REF.finditer(text)]


def only_refs(text: str) -> bool:
    """Whether ``text`` is made of references alone (no literal character): a value
    that may stand where a secret goes."""
    return bool(text) and not ENV_REF.sub("", text)
