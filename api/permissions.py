"""Permissions, built-in roles, and the one table of what each route needs.

A permission is ``<area>:<action>``. Each has the lowest built-in role that holds it
(:data:`CATALOG`); the built-in roles are the sets this gives (``viewer`` ⊂
``operator`` ⊂ ``admin``), and admins define custom roles as any other set of known
permissions (``api.users.store``).

Every ``/api/v1`` route declares what it needs in ONE place, :data:`ROUTE_PERMISSIONS`,
keyed by method and path template. ``api.context.require`` — the dependency behind the
``viewer``/``operator``/``admin`` shorthands every router uses — looks the route up
there; a route not (yet) in the table falls back to "every permission of that built-in
role", so a router added later is never more open than its shorthand, and the test that
walks the OpenAPI (``tests/api/test_permissions.py``) names it until it is added here.
Two markers are not permissions: :data:`PUBLIC` (login, refresh, logout, device
routes: no caller identity) and :data:`AUTHENTICATED` (any signed-in caller: ``/me``,
one's own password).
"""

from __future__ import annotations

PUBLIC = "public"
AUTHENTICATED = "authenticated"

#: permission -> (lowest built-in role holding it, what it allows)
CATALOG: dict[str, tuple[str, str]] = {
    "status:read": ("viewer", "engine status"),
    "identities:read": ("viewer", "identities, their tags, counts and device metrics"),
    "signals:read": ("viewer", "readings: raw, aggregates, latest"),
    "state:read": ("viewer", "desired/reported resource states and deviations"),
    "resources:read": ("viewer", "resource definitions and runners"),
    "alarms:read": ("viewer", "alarms, annotations and alarm rules"),
    "config:read": ("viewer", "configuration schema, templates, validation"),
    "connectors:read": ("viewer", "connector status"),
    "deadletters:read": ("viewer", "dead-lettered events"),
    "stream:read": ("viewer", "the live stream (SSE)"),
    "sql:query": (
        "viewer",
        "read-only analyst SQL (every row: a role's scope does not confine it)",
    ),
    "telemetry:write": ("operator", "ingest readings through the API"),
    "identities:write": ("operator", "create, update, lock, tag and delete identities"),
    "state:set": ("operator", "set desired state on identities"),
    "alarms:acknowledge": ("operator", "acknowledge, discard and annotate alarms"),
    "audits:read": ("operator", "the audit trail and activities"),
    "archive:read": ("operator", "the archive's windows"),
    "resources:manage": ("admin", "define, change and remove resources"),
    "alarms:manage": ("admin", "define, change and remove alarm rules"),
    "keys:manage": ("admin", "create, list, rotate and revoke API keys"),
    "users:manage": (
        "admin",
        "create, change, disable and delete users; rotate the token signing key",
    ),
    "roles:manage": ("admin", "define custom roles"),
    "services:manage": ("admin", "commissioning services"),
    "services:read": ("viewer", "services, their files (secrets masked) and resources"),
    "connectors:control": ("operator", "start, stop and restart connectors"),
    "archive:manage": ("admin", "archive runs and retention"),
    "restore:run": ("operator", "restore archived streams, follow and retry restores"),
    "replay:run": ("admin", "replay the log into projections"),
    "replay:read": ("viewer", "replay tasks and their progress"),
    "system:read": ("viewer", "system info, hourly/daily system metrics, /metrics"),
    "pipeline:control": ("operator", "pause and resume the runtime"),
    "logs:read": ("admin", "recent log records and their live stream"),
    "config:inspect": ("operator", "the running configuration (secrets masked)"),
    "config:write": ("admin", "the running configuration and its runtime settings"),
}

BUILTIN_LEVELS = ("viewer", "operator", "admin")


def _builtin(level: str) -> frozenset[str]:
    upto = BUILTIN_LEVELS[: BUILTIN_LEVELS.index(level) + 1]
    return frozenset(p for p, (lowest, _) in CATALOG.items() if lowest in upto)


#: built-in role -> its permissions
BUILTIN_ROLES: dict[str, frozenset[str]] = {name: _builtin(name) for name in BUILTIN_LEVELS}


def unknown_permissions(names: list[str] | set[str] | frozenset[str]) -> list[str]:
    """The names in ``names`` that are not permissions (sorted)."""
    return sorted(n for n in set(names) if n not in CATALOG)


_V = "/api/v1"

#: (method, path template) -> permission, PUBLIC or AUTHENTICATED
ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    # device-facing: the device's own credential, or an API key with telemetry:write
    ("POST", f"{_V}/identities/{{identity}}/data"): "telemetry:write",
    ("POST", f"{_V}/provision"): PUBLIC,
    ("POST", f"{_V}/identities"): "identities:write",
    ("GET", f"{_V}/identities"): "identities:read",
    ("GET", f"{_V}/identities/count"): "identities:read",
    ("POST", f"{_V}/identities/bulk/update"): "identities:write",
    ("POST", f"{_V}/identities/bulk/delete"): "identities:write",
    ("GET", f"{_V}/identities/{{identity}}"): "identities:read",
    ("PATCH", f"{_V}/identities/{{identity}}"): "identities:write",
    ("DELETE", f"{_V}/identities/{{identity}}"): "identities:write",
    ("POST", f"{_V}/identities/{{identity}}/lock"): "identities:write",
    ("POST", f"{_V}/identities/{{identity}}/unlock"): "identities:write",
    ("POST", f"{_V}/identities/{{identity}}/tags"): "identities:write",
    ("GET", f"{_V}/identities/{{identity}}/tags"): "identities:read",
    ("GET", f"{_V}/identities/{{identity}}/tags/{{tag}}"): "identities:read",
    ("DELETE", f"{_V}/identities/{{identity}}/tags/{{tag}}"): "identities:write",
    ("GET", f"{_V}/tags"): "identities:read",
    ("GET", f"{_V}/tags/{{tag}}"): "identities:read",
    ("GET", f"{_V}/identities/{{identity}}/state"): "state:read",
    ("POST", f"{_V}/identities/{{identity}}/state"): "state:set",
    ("GET", f"{_V}/resources/states"): "state:read",
    ("GET", f"{_V}/resources/states/deviations"): "state:read",
    ("GET", f"{_V}/resources/states/deviations/count"): "state:read",
    ("GET", f"{_V}/resource-runners"): "resources:read",
    ("GET", f"{_V}/resources"): "resources:read",
    ("GET", f"{_V}/resources/{{name}}"): "resources:read",
    ("POST", f"{_V}/resources/{{name}}"): "resources:manage",
    ("PUT", f"{_V}/resources/{{name}}"): "resources:manage",
    ("DELETE", f"{_V}/resources/{{name}}"): "resources:manage",
    ("GET", f"{_V}/metrics/devices"): "identities:read",
    ("GET", f"{_V}/identities/{{identity}}/signals/aggregates"): "signals:read",
    ("GET", f"{_V}/identities/{{identity}}/signals/{{signal}}"): "signals:read",
    ("GET", f"{_V}/identities/{{identity}}/signals"): "signals:read",
    ("GET", f"{_V}/identities/{{identity}}/signals/{{signal}}/aggregates"): "signals:read",
    ("GET", f"{_V}/signals/latest"): "signals:read",
    ("POST", f"{_V}/sql"): "sql:query",
    ("GET", f"{_V}/status"): "status:read",
    ("GET", f"{_V}/me"): AUTHENTICATED,
    ("POST", f"{_V}/keys"): "keys:manage",
    ("GET", f"{_V}/keys"): "keys:manage",
    ("DELETE", f"{_V}/keys/{{key_id}}"): "keys:manage",
    ("POST", f"{_V}/keys/{{key_id}}/rotate"): "keys:manage",
    ("GET", f"{_V}/deadletters"): "deadletters:read",
    ("POST", f"{_V}/config/validate"): "config:read",
    ("GET", f"{_V}/config/templates"): "config:read",
    ("GET", f"{_V}/config/templates/{{protocol}}"): "config:read",
    ("GET", f"{_V}/config/schema"): "config:read",
    ("GET", f"{_V}/connectors"): "connectors:read",
    ("GET", f"{_V}/connectors/{{name}}"): "connectors:read",
    ("GET", f"{_V}/audits"): "audits:read",
    ("GET", f"{_V}/audits/{{audit_id}}"): "audits:read",
    ("GET", f"{_V}/activities"): "audits:read",
    ("GET", f"{_V}/stream"): "stream:read",
    ("POST", f"{_V}/stream/{{stream_id}}/subscriptions"): "stream:read",
    ("GET", f"{_V}/stream/{{stream_id}}/subscriptions"): "stream:read",
    ("DELETE", f"{_V}/stream/{{stream_id}}/subscriptions/{{subscription_id}}"): "stream:read",
    ("GET", f"{_V}/alarms"): "alarms:read",
    ("POST", f"{_V}/alarms/batch/acknowledge"): "alarms:acknowledge",
    ("POST", f"{_V}/alarms/batch/discard"): "alarms:acknowledge",
    ("GET", f"{_V}/alarms/{{alarm_id}}"): "alarms:read",
    ("POST", f"{_V}/alarms/{{alarm_id}}/acknowledge"): "alarms:acknowledge",
    ("POST", f"{_V}/alarms/{{alarm_id}}/discard"): "alarms:acknowledge",
    ("POST", f"{_V}/alarms/{{alarm_id}}/annotations"): "alarms:acknowledge",
    ("GET", f"{_V}/alarms/{{alarm_id}}/annotations"): "alarms:read",
    ("GET", f"{_V}/alarm-rules"): "alarms:read",
    ("POST", f"{_V}/alarm-rules"): "alarms:manage",
    ("GET", f"{_V}/alarm-rules/{{rule_id}}"): "alarms:read",
    ("PUT", f"{_V}/alarm-rules/{{rule_id}}"): "alarms:manage",
    ("DELETE", f"{_V}/alarm-rules/{{rule_id}}"): "alarms:manage",
    ("GET", f"{_V}/archive"): "archive:read",
    ("POST", f"{_V}/archive/flush"): "archive:manage",
    ("POST", f"{_V}/restore/time"): "restore:run",
    ("POST", f"{_V}/restore/url"): "restore:run",
    ("GET", f"{_V}/restore"): "restore:run",
    ("GET", f"{_V}/restore/{{task_id}}"): "restore:run",
    ("POST", f"{_V}/restore/{{task_id}}/retry"): "restore:run",
    ("POST", f"{_V}/replay"): "replay:run",
    ("GET", f"{_V}/replay"): "replay:read",
    ("GET", f"{_V}/replay/{{task_id}}"): "replay:read",
    # services (api/routers/services.py) and connector control (connectors.py)
    ("POST", f"{_V}/services"): "services:manage",
    ("GET", f"{_V}/services"): "services:read",
    ("GET", f"{_V}/services/{{service_id}}"): "services:read",
    ("PUT", f"{_V}/services/{{service_id}}"): "services:manage",
    ("DELETE", f"{_V}/services/{{service_id}}"): "services:manage",
    ("POST", f"{_V}/services/{{service_id}}/enable"): "services:manage",
    ("POST", f"{_V}/services/{{service_id}}/disable"): "services:manage",
    ("POST", f"{_V}/connectors/{{name}}/{{action}}"): "connectors:control",
    # operations (api/routers/operations.py)
    ("GET", f"{_V}/system/info"): "system:read",
    ("GET", f"{_V}/system/metrics"): "system:read",
    ("POST", f"{_V}/pipeline/pause"): "pipeline:control",
    ("POST", f"{_V}/pipeline/resume"): "pipeline:control",
    ("GET", f"{_V}/logs"): "logs:read",
    ("GET", f"{_V}/logs/stream"): "logs:read",
    ("GET", f"{_V}/config"): "config:inspect",
    ("PATCH", f"{_V}/config"): "config:write",
    # users, login, roles (api/routers/users.py, login.py, roles.py)
    ("POST", f"{_V}/login"): PUBLIC,
    ("POST", f"{_V}/refresh"): PUBLIC,
    ("POST", f"{_V}/logout"): PUBLIC,
    ("POST", f"{_V}/auth/keys/rotate"): "users:manage",
    ("PUT", f"{_V}/me/password"): AUTHENTICATED,
    ("GET", f"{_V}/users"): "users:manage",
    ("POST", f"{_V}/users"): "users:manage",
    ("GET", f"{_V}/users/{{username}}"): "users:manage",
    ("PATCH", f"{_V}/users/{{username}}"): "users:manage",
    ("DELETE", f"{_V}/users/{{username}}"): "users:manage",
    ("GET", f"{_V}/permissions"): AUTHENTICATED,
    ("GET", f"{_V}/roles"): "roles:manage",
    ("POST", f"{_V}/roles"): "roles:manage",
    ("GET", f"{_V}/roles/{{name}}"): "roles:manage",
    ("PUT", f"{_V}/roles/{{name}}"): "roles:manage",
    ("DELETE", f"{_V}/roles/{{name}}"): "roles:manage",
}

#: routes that filter what they answer by a scoped caller's identities (a scoped role
#: reaches these besides the routes of one identity; every other route refuses it).
#: Each filters through ``api.users.scope`` (``within`` in SQL, ``allows`` in Python).
SCOPE_AWARE = frozenset(
    {
        ("GET", f"{_V}/identities"),
        ("GET", f"{_V}/identities/count"),
        ("POST", f"{_V}/identities/bulk/update"),
        ("POST", f"{_V}/identities/bulk/delete"),
        ("GET", f"{_V}/signals/latest"),
        # alarms of identities outside the scope are 404, in a batch too
        ("GET", f"{_V}/alarms"),
        ("GET", f"{_V}/alarms/{{alarm_id}}"),
        ("POST", f"{_V}/alarms/{{alarm_id}}/acknowledge"),
        ("POST", f"{_V}/alarms/{{alarm_id}}/discard"),
        ("POST", f"{_V}/alarms/{{alarm_id}}/annotations"),
        ("GET", f"{_V}/alarms/{{alarm_id}}/annotations"),
        ("POST", f"{_V}/alarms/batch/acknowledge"),
        ("POST", f"{_V}/alarms/batch/discard"),
        # audit records about identities in scope (writes to them, actions on their alarms)
        ("GET", f"{_V}/audits"),
        ("GET", f"{_V}/audits/{{audit_id}}"),
        ("GET", f"{_V}/activities"),
        ("GET", f"{_V}/tags"),
        ("GET", f"{_V}/tags/{{tag}}"),
        # the desired state of identities in scope; connector resources hidden
        ("GET", f"{_V}/resources/states"),
        ("GET", f"{_V}/resources/states/deviations"),
        ("GET", f"{_V}/resources/states/deviations/count"),
        # subscriptions match items of identities in scope only
        ("GET", f"{_V}/stream"),
        ("POST", f"{_V}/stream/{{stream_id}}/subscriptions"),
        ("GET", f"{_V}/stream/{{stream_id}}/subscriptions"),
        ("DELETE", f"{_V}/stream/{{stream_id}}/subscriptions/{{subscription_id}}"),
        # dead letters of identity-keyed topics whose key is in scope; the rest hidden
        ("GET", f"{_V}/deadletters"),
    }
)

#: routes a scoped role reaches unfiltered when its permission is granted: analyst SQL
#: reads every row (ClickHouse SQL cannot be confined to a scope by rewriting it, and
#: the embedded store has no users for row policies); a scoped role without
#: ``sql:query`` is refused as any role is. Granting it is the admin's explicit choice.
SCOPE_UNFILTERED = frozenset({("POST", f"{_V}/sql")})

#: sign-in routes: the credential is in the body, the middleware lets them through
#: (the device routes have their own rule, ``api.middleware.DEVICE_ROUTES``)
SIGN_IN_PATHS = frozenset({f"{_V}/login", f"{_V}/refresh", f"{_V}/logout"})
