"""The API answers of access errors (``store.AccessError``, ``policy.PasswordRejectedError``)."""

from __future__ import annotations

from millrace.api.errors import ApiError
from millrace.api.users.policy import PasswordRejectedError
from millrace.api.users.store import AccessError


def api_error(exc: AccessError | PasswordRejectedError) -> ApiError:
    """A path parameter (not found) keeps its name; a body field gets ``body.``."""
    if isinstance(exc, PasswordRejectedError):
        field, rule = "body.password", exc.rule
        message = f"{field}: {exc.message.partition(': ')[2]} (rule: {rule})"
        return ApiError(
            400, "weak_password", message, [{"field": field, "message": message, "rule": rule}]
        )
    field = exc.field if exc.status == 404 else f"body.{exc.field}"
    message = f"{field}: {exc.message.partition(': ')[2]}"
    return ApiError(exc.status, exc.code, message, [{"field": field, "message": message}])
