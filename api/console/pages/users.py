"""Users and keys (admins): users with their roles, enabled or not, last login; roles
with their permissions and scope; the permission catalogue; API keys.

Each list is its endpoint's (``/users``, ``/roles``, ``/permissions``, ``/keys``) and
each change goes through it: create a user, enable/disable, change roles, set a new
password, delete; define or remove a custom role; create, rotate and revoke a key. A new
key's secret is shown once, in the dialog that created it (the API never shows it
again). The page needs ``users:manage``; the role and key parts also ``roles:manage``
and ``keys:manage`` (an admin holds all three).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nicegui import ui

from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_ops import (
    Reload,
    act,
    error_line,
    load_into,
    table,
    us_text,
)

USERS = "users:manage"
ROLES = "roles:manage"
KEYS = "keys:manage"
USER_COLUMNS = [
    ("username", "User"),
    ("display_name", "Name"),
    ("roles", "Roles"),
    ("enabled", "Enabled"),
    ("last_login", "Last sign-in (UTC)"),
]
ROLE_COLUMNS = [
    ("name", "Role"),
    ("kind", "Kind"),
    ("permissions", "Permissions"),
    ("scope", "Scope"),
]
KEY_COLUMNS = [
    ("id", "Key"),
    ("name", "Name"),
    ("role", "Role"),
    ("created", "Created (UTC)"),
    ("expires", "Expires (UTC)"),
    ("last_used", "Last used (UTC)"),
]


def _heading(text: str) -> None:
    ui.label(text).classes("text-lg font-semibold").props('role="heading" aria-level="2"')


def _csv(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


async def _delete(ctx: PageContext, path: str, done: str, reload: Reload) -> None:
    await ctx.api.request("DELETE", path)
    ui.notify(f"{path.removeprefix('/')} {done}")
    await reload()


async def build(ctx: PageContext) -> None:
    await _users(ctx)
    if ctx.can(ROLES):
        await _roles(ctx)
    if ctx.can(KEYS):
        await _keys(ctx)


async def _users(ctx: PageContext) -> None:
    _heading("Users")
    error = error_line()
    grid = table(USER_COLUMNS, "user-table", "users", row_key="username")

    async def reload() -> None:
        grid.rows = [
            {
                "username": u["username"],
                "display_name": u.get("display_name", ""),
                "roles": ", ".join(u.get("roles", [])),
                "enabled": "yes" if u.get("enabled") else "no",
                "last_login": us_text(u.get("last_login_us")),
            }
            for u in (await ctx.api.get("/users"))["data"]
        ]

    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        name = ui.input("Username").props("name=user-name")
        password = ui.input("Password", password=True).props("name=user-password")
        roles = ui.input("Roles (comma separated)", value="viewer").props("name=user-roles")

        async def create() -> None:
            body = {"username": name.value, "password": password.value, "roles": _csv(roles.value)}
            await ctx.api.post("/users", body)
            ui.notify(f"user {name.value} created")
            name.value = password.value = ""
            await reload()

        async def change(patch: dict[str, Any], what: str) -> None:
            if not name.value:
                ui.notify("give the username first", type="warning")
                return
            path = f"/users/{quote(name.value, safe='')}"
            await ctx.api.request("PATCH", path, json=patch)
            ui.notify(f"user {name.value}: {what}")
            await reload()

        async def delete() -> None:
            await _delete(ctx, f"/users/{quote(name.value or '', safe='')}", "deleted", reload)

        act(ctx, USERS, "Create user", create, "create-user")
        act(
            ctx,
            USERS,
            "Set roles",
            lambda: change({"roles": _csv(roles.value)}, "roles set"),
            "set-roles",
        )
        act(
            ctx,
            USERS,
            "Set password",
            lambda: change({"password": password.value}, "password set (sessions ended)"),
            "set-password",
        )
        act(ctx, USERS, "Enable", lambda: change({"enabled": True}, "enabled"), "enable-user")
        act(ctx, USERS, "Disable", lambda: change({"enabled": False}, "disabled"), "disable-user")
        act(ctx, USERS, "Delete user", delete, "delete-user")
    await load_into(error, reload)


async def _roles(ctx: PageContext) -> None:
    _heading("Roles")
    error = error_line()
    grid = table(ROLE_COLUMNS, "role-table", "roles", row_key="name")

    async def reload() -> None:
        grid.rows = [
            {
                "name": r["name"],
                "kind": "built-in" if r.get("builtin") else "custom",
                "permissions": ", ".join(r.get("permissions", [])),
                "scope": "every identity" if not r.get("scope") else str(r["scope"]),
            }
            for r in (await ctx.api.get("/roles"))["data"]
        ]

    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        name = ui.input("Role name").props("name=role-name")
        granted = ui.input("Permissions (comma separated)").classes("grow")
        scope = ui.input("Scope: identity patterns (comma separated; empty: all)")

        async def save() -> None:
            body: dict[str, Any] = {"permissions": _csv(granted.value)}
            if patterns := _csv(scope.value):
                body["scope"] = {"identities": patterns}
            path = f"/roles/{quote(name.value or '', safe='')}"
            await ctx.api.request("PUT", path, json=body)
            ui.notify(f"role {name.value} saved")
            await reload()

        async def remove() -> None:
            await _delete(ctx, f"/roles/{quote(name.value or '', safe='')}", "removed", reload)

        act(ctx, ROLES, "Save role", save, "save-role")
        act(ctx, ROLES, "Remove role", remove, "remove-role")
    with ui.expansion("The permissions a role may hold").classes("w-full"):
        listed = (await ctx.api.get("/permissions"))["data"]
        catalogue = table(
            [("name", "Permission"), ("builtin_role", "Lowest built-in role"), ("description", "")],
            "permission-table",
            "permissions",
            row_key="name",
        )
        catalogue.rows = listed
    await load_into(error, reload)


async def _keys(ctx: PageContext) -> None:
    _heading("API keys")
    error = error_line()
    grid = table(KEY_COLUMNS, "key-table", "API keys")

    async def reload() -> None:
        grid.rows = [
            {
                "id": k["id"],
                "name": k["name"],
                "role": k["role"],
                "created": us_text(k.get("created_us")),
                "expires": us_text(k.get("expires_us")) or "never",
                "last_used": us_text(k.get("last_used_us")),
            }
            for k in (await ctx.api.get("/keys"))["data"]
        ]

    with ui.dialog() as shown, ui.card().classes("gap-2"):
        ui.label("The key's secret, shown this once: copy it now.").classes("font-semibold")
        secret = ui.label("").classes("font-mono break-all").props('data-testid="new-key"')
        ui.button("Done", on_click=shown.close).props("no-caps")

    def reveal(answer: dict[str, Any]) -> None:
        secret.text = answer["data"]["key"]
        shown.open()

    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        name = ui.input("Key name").props("name=key-name")
        role = ui.input("Role", value="viewer").props("name=key-role")
        expires = ui.input("Expires (ISO-8601; empty: never)")
        key_id = ui.input("Key id (to rotate or revoke)").props("name=key-id")

        async def create() -> None:
            body = {"name": name.value, "role": role.value}
            if expires.value:
                body["expires_at"] = expires.value
            reveal(await ctx.api.post("/keys", body))
            await reload()

        async def rotate() -> None:
            reveal(await ctx.api.post(f"/keys/{quote(key_id.value or '', safe='')}/rotate"))
            await reload()

        async def revoke() -> None:
            await _delete(ctx, f"/keys/{quote(key_id.value or '', safe='')}", "revoked", reload)

        act(ctx, KEYS, "Create key", create, "create-key")
        act(ctx, KEYS, "Rotate key", rotate, "rotate-key")
        act(ctx, KEYS, "Revoke key", revoke, "revoke-key")
    await load_into(error, reload)


PAGE = Page(path=path_of(__name__), title="Users", icon="group", needs=(USERS,), build=build)
