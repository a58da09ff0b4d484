"""Fetching a restore file by URL: http(s) with urllib (HTTP Basic credentials resolved
here, redirects never followed), anything else (``file://``, ``s3://``) through fsspec
with the credentials of the environment.

The credentials arrive as written (``urls.BasicAuth``: ``${ENV}`` references) and are
resolved from the environment of this process — the task runner, wherever it runs —
into an ``Authorization`` header; neither the header nor the values appear in an error
(an unset variable is named, a refused login names the variables, not their values).
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec

from millrace.pipeline.archive.errors import ArchiveFormatError, ArchiveStoreError
from millrace.pipeline.env_refs import substitute_env
from millrace.pipeline.restore.errors import RestoreError
from millrace.pipeline.restore.urls import BasicAuth, masked_url


def authorization(auth: BasicAuth, env: Mapping[str, str], where: str) -> str:
    """The ``Authorization`` header of ``auth`` with its references resolved from
    ``env``; RestoreError naming a variable that is not set."""
    unset = [name for name in auth.names() if name not in env]
    if unset:
        names = ", ".join(f"${{{name}}}" for name in unset)
        raise RestoreError(
            f"{where}: credentials: {names} not set in the environment of the task runner"
        )
    user, password = substitute_env(auth.user, env), substitute_env(auth.password, env)
    if ":" in user:
        raise RestoreError(f"{where}: credentials: the user may not contain ':' (HTTP Basic)")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        fp.close()  # the redirect's response holds the connection: release it now
        where = masked_url(req.full_url)
        raise ArchiveStoreError(f"{where}: answered {code} (a redirect, not followed)")


def _fetch_http(url: str, auth: BasicAuth | None, env: Mapping[str, str]) -> bytes:
    """An http(s) file, redirects refused (the allow-list vetted this URL, not wherever
    the server sends the client next: the credentials go to this host only)."""
    opener = urllib.request.build_opener(_NoRedirect)
    shown = masked_url(url)
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", authorization(auth, env, shown))
    try:
        with opener.open(request, timeout=60) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        exc.close()  # its response holds the connection
        if exc.code == 404:
            raise ArchiveFormatError(f"{shown}: missing") from exc
        if exc.code in (401, 403):
            raise ArchiveStoreError(f"{shown}: HTTP {exc.code}: {_refused(auth)}") from exc
        raise ArchiveStoreError(f"{shown}: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ArchiveStoreError(f"{shown}: {masked_url(str(exc))}") from exc


def _refused(auth: BasicAuth | None) -> str:
    if auth is None:
        return "the server asks for credentials (declare them in the allow-list prefix)"
    names = ", ".join(f"${{{n}}}" for n in auth.names()) or f"user {auth.user!r}"
    return f"the credentials from {names} were refused"


def fetch(url: str, auth: BasicAuth | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The file's bytes (blocking). ArchiveFormatError for a missing file,
    ArchiveStoreError when it cannot be reached or the credentials are refused,
    RestoreError when they cannot be resolved. ``env``: the process's environment."""
    env = os.environ if env is None else env
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return _fetch_http(url, auth, env)
    shown = masked_url(url)
    try:
        with fsspec.open(url, "rb") as fh:
            return bytes(fh.read())
    except FileNotFoundError as exc:
        raise ArchiveFormatError(f"{shown}: missing") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise ArchiveStoreError(f"{shown}: {masked_url(str(exc))}") from exc


def fetch_optional(
    url: str, auth: BasicAuth | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """The file's bytes, or None when it cannot be had (a manifest beside a file)."""
    try:
        return fetch(url, auth, env)
    except (ArchiveFormatError, ArchiveStoreError, RestoreError):
        return None
