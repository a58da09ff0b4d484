"""Restore URLs: which ones a restore may read, with which credentials, and how they show.

Allow-list. A path on the archive store (relative, or under ``archive.url``) is always
allowed; a ``file://``, ``http(s)://`` or ``s3://`` URL must be below one of
``restore.allowed_url_prefixes``. URLs are compared parsed, not as strings: the scheme,
the host and the port must be the prefix's exactly (``https://files.example.com`` does
not admit ``https://files.example.com.evil.net/``), and the path must continue the
prefix's path at a segment boundary. The path is percent-decoded and its ``.`` segments
dropped first; a ``..`` segment, an encoded slash or backslash, a query or a fragment is
refused: what an HTTP client would normalise to another place never passes. Credentials
are not part of the comparison.

Credentials. Only http(s) URLs carry them (HTTP Basic); S3 and the archive store take
theirs from the task runner's environment or ``archive.storage_options``. A password is
never written as such — the task's parameters are an event on the ``tasks`` topic, and
the allow-list is configuration — but as ``${ENV}`` references
(``https://${ARCHIVE_USER}:${ARCHIVE_PASSWORD}@files.example.com/exports/``), the syntax
of commissioning files (``pipeline.env_refs``), resolved by the process that fetches
the file (``fetch.authorization``) from its environment; a literal password is refused
(400). The allow-list prefix declares the references: a URL may leave its credentials
out (the prefix's are used) or repeat the prefix's, and names no other variable (403):
an operator who may start restores cannot make the runner send any other variable of
its environment (a signing key, a database password) to a host the allow-list admits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from millrace.pipeline.env_refs import env_names, only_refs
from millrace.pipeline.restore.errors import RestoreError, RestoreForbiddenError

URL_SCHEMES = ("file", "http", "https", "s3")
#: hosts an http:// URL may send credentials to (the traffic stays on the machine)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HTTP_SCHEMES = ("http", "https")

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@/\s]+)@")


def masked_url(text: str) -> str:
    """``text`` with every literal URL password shown as ``***``
    (``scheme://user:***@host``), ``${ENV}`` references shown as they are: what task
    answers, task events (file names, reasons), the configuration shown and the logs
    show of a URL."""

    def hide(m: re.Match[str]) -> str:
        shown = m.group(2) if only_refs(unquote(m.group(2))) else "***"
        return f"{m.group(1)}{shown}@"

    return _URL_PASSWORD.sub(hide, text)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP Basic credentials as written: a user and a password, each literal text or
    ``${ENV}`` references (the password only references), resolved where fetched."""

    user: str
    password: str

    def names(self) -> list[str]:
        """The variables the credentials reference."""
        return env_names(self.user) + env_names(self.password)


@dataclass(frozen=True, slots=True)
class AdmittedUrl:
    """A URL the allow-list admits: as fetched (no user info) and its credentials."""

    url: str
    auth: BasicAuth | None = None


def _userinfo(parts: SplitResult) -> BasicAuth | None:
    info, at, _ = parts.netloc.rpartition("@")
    if not at:
        return None
    user, _, password = info.partition(":")
    return BasicAuth(unquote(user), unquote(password))


def check_credentials(url: str, field: str = "urls") -> None:
    """RestoreError (400) when ``url`` carries credentials that would put a secret on
    the log or in the configuration: a literal password, credentials in a URL other
    than http(s), or credentials over http:// to another host than the machine's own
    (they would cross the network in clear text)."""
    if "://" not in url:
        return
    parts = urlsplit(url)
    auth = _userinfo(parts)
    if auth is None:
        return
    if parts.scheme.lower() not in HTTP_SCHEMES:
        raise RestoreError(
            f"{field}: {parts.scheme}:// URLs take no credentials: the task runner's "
            "environment (or archive.storage_options) gives them"
        )
    if auth.password and not only_refs(auth.password):
        raise RestoreError(
            f"{field}: {masked_url(url)!r} holds a literal password: write it as an ${{ENV}} "
            "reference (https://user:${ARCHIVE_PASSWORD}@host/...), resolved by the task "
            "runner from its environment"
        )
    if parts.scheme.lower() == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise RestoreError(
            f"{field}: {masked_url(url)!r} would send its credentials in clear text: use "
            "https:// (http:// takes credentials only to 127.0.0.1, localhost or ::1)"
        )


def admit_url(
    url: str, allowed: Sequence[str], archive_url: str | None, field: str = "urls"
) -> AdmittedUrl:
    """The URL as fetched and its credentials, if the allow-list admits it (see the
    module's docstring); RestoreError (400) for a literal password,
    RestoreForbiddenError (403) for anything outside the allow-list. An absolute local
    path is taken as a ``file://`` URL; the messages start with ``field``."""
    check_credentials(url, field)
    if "://" not in url and not url.startswith("/"):
        if segments(url) is None:
            raise RestoreForbiddenError(f"{field}: {url!r} is not a path inside the archive")
        return AdmittedUrl(url)  # relative: a path on the archive store
    parts = urlsplit(url if "://" in url else "file://" + url)
    shown = masked_url(url)
    if segments(parts.path) is None or parts.query or parts.fragment or "#" in url:
        raise RestoreForbiddenError(f"{field}: {shown!r} is not a plain file URL")
    given = _userinfo(parts)
    plain = url if given is None else parts._replace(netloc=parts.netloc.rpartition("@")[2])
    fetched = plain if isinstance(plain, str) else plain.geturl()
    if archive_url and _under(parts, archive_url):
        if given is not None:
            raise RestoreForbiddenError(
                f"{field}: {shown!r} is on the archive store, whose credentials are "
                "archive.storage_options, not the URL's"
            )
        return AdmittedUrl(fetched)
    if parts.scheme.lower() not in URL_SCHEMES:
        raise RestoreForbiddenError(f"{field}: {shown!r}: scheme not allowed")
    admitting = sorted((p for p in allowed if p and _under(parts, p)), key=_depth, reverse=True)
    if not admitting:
        raise RestoreForbiddenError(f"{field}: {shown!r} is outside the allowed URL prefixes")
    declared = [_userinfo(urlsplit(p)) for p in admitting]
    if given is None:
        return AdmittedUrl(fetched, declared[0])  # the most specific prefix's
    if given in declared:
        return AdmittedUrl(fetched, given)
    raise RestoreForbiddenError(
        f"{field}: the credentials of {shown!r} are not those its allow-list prefix "
        "declares: leave them out (the prefix's are used) or write the prefix's ${ENV} "
        "references"
    )


def check_url(url: str, allowed: Sequence[str], archive_url: str | None) -> None:
    """RestoreError unless ``url`` is a path inside the archive store, under the
    archive store's URL, or under an allowed prefix (``admit_url``)."""
    admit_url(url, allowed, archive_url)


def segments(path: str) -> list[str] | None:
    """The path's segments after percent-decoding (``.`` and empty ones left out), or
    None when it could lead elsewhere (a ``..`` segment, encoded ``/`` or ``\\``, a backslash)."""
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered:
        return None
    parts = unquote(path).split("/")
    if ".." in parts:
        return None
    return [seg for seg in parts if seg not in ("", ".")]


def netloc_key(parts: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port as compared (default ports filled in; no user info)."""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() == "file" and host == "localhost":
        host = ""
    return parts.scheme.lower(), host, port


def _parsed_prefix(prefix: str) -> SplitResult:
    return urlsplit(prefix if "://" in prefix else "file://" + prefix)  # a local directory


def _depth(prefix: str) -> int:
    return len(segments(_parsed_prefix(prefix).path) or ())


def _under(parts: SplitResult, prefix: str) -> bool:
    """Whether the parsed URL is below ``prefix`` (a URL or, for the archive store, a
    local path): same scheme, host and port, the path below the prefix's path."""
    base = _parsed_prefix(prefix)
    if netloc_key(parts) != netloc_key(base):
        return False
    want, have = segments(base.path), segments(parts.path)
    if want is None or have is None:
        return False
    return len(have) > len(want) and have[: len(want)] == want
