"""Secrets in a commissioning file are ``${ENV}`` references, never values.

A commissioning file is stored as written: as a service on the ``services`` topic
(``connectors.services``), hence in archives and replays, and shown (masked) by the API.
A password written into it would sit on the log for as long as the log is kept. So a
credential field (a key naming a password, passphrase, secret, token, API key or
credential) in the connector sections must be made of ``${NAME}`` references to
environment variables alone, resolved by the process that runs the file from its own
environment; a ``${name}`` that is one of the file's parameters does not count, since
parameter values are stored with the service too.

The placeholder ``***`` the API shows in place of a secret is left to the API's own
check (``api.service_files.masked_placeholders``), which says what to send instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from millrace.connectors._common.models import Violation
from millrace.connectors.violations import json_path
from millrace.pipeline.env_refs import ENV_REF, env_names

#: the last word of a key that holds a credential (``private_key_password``,
#: ``clientSecret``, ``access-token``); ``api_key``/``apiKey`` are two words
CREDENTIAL_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "credential", "credentials", "apikey"}
)
_WORDS = re.compile(r"[_\-\s.]+|(?<=[a-z0-9])(?=[A-Z])")
#: the connector sections of a commissioning file (``parameters`` holds declarations)
SECTIONS = ("connections", "endpoints", "mappings")
MASKED = "***"


def credential_key(key: str) -> bool:
    """Whether ``key`` names a credential: its last word is one (``password``,
    ``client_secret``, ``privateKeyPassword``, ``api_key``), so a key that only mentions
    one (``token_url``, ``password_file``, ``secret_name``) is not."""
    words = [w.lower() for w in _WORDS.split(key) if w]
    if not words:
        return False
    return words[-1] in CREDENTIAL_WORDS or words[-2:] == ["api", "key"]


def secret_value(key: object, value: object) -> bool:
    """Whether ``value`` under ``key`` is a credential: a credential key holding a
    scalar that is not a switch (``use_token: true`` names no secret)."""
    return (
        isinstance(key, str)
        and credential_key(key)
        and not isinstance(value, Mapping | list | bool)
    )


def literal_secrets(doc: Mapping[str, Any]) -> list[Violation]:
    """An error for every credential field of ``doc`` (a parsed file, parameters not
    substituted) whose value is not made of environment references alone."""
    declared = doc.get("parameters")
    parameters = set(declared) if isinstance(declared, Mapping) else set()
    found: list[Violation] = []
    for section in SECTIONS:
        if section in doc:
            found += _walk(doc[section], (section,), parameters)
    return found


def _walk(node: Any, loc: tuple[int | str, ...], parameters: set[str]) -> list[Violation]:
    items = (
        node.items()
        if isinstance(node, Mapping)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    found: list[Violation] = []
    for k, v in items:
        at = (*loc, k if isinstance(k, int) else str(k))
        if secret_value(k, v):
            problem = _problem(v, parameters)
            if problem:
                found.append(Violation(level="error", json_path=json_path(at), description=problem))
        else:
            found += _walk(v, at, parameters)
    return found


def _problem(value: Any, parameters: set[str]) -> str:
    if value is None or value == "" or value == MASKED:
        return ""
    text = value if isinstance(value, str) else ""
    if not text or ENV_REF.sub("", text):
        return (
            "a secret written into the file is stored with the service on the log as "
            "written: give it as an ${ENV} reference (e.g. ${MQTT_PASSWORD}), resolved "
            "from the environment where the file runs"
        )
    params = [name for name in env_names(text) if name in parameters]
    if params:
        return (
            f"${{{params[0]}}} is a parameter of this file, and parameter values are "
            "stored with the service: name an environment variable instead"
        )
    return ""
