"""The user/role/token lifecycle as a hypothesis state machine, against
``api.users.AccessControl`` (the same object the middleware and routes ask), with a
model kept independently in the test: create, login, refresh rotation, reuse
detection, disable, delete, role change — and after every step, every access token
ever issued is accepted exactly when the model says, with exactly the permissions of
the user's roles *now*."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from millrace.api.auth import KeyStore
from millrace.api.permissions import BUILTIN_ROLES
from millrace.api.users.access import AccessControl
from millrace.api.users.sessions import RefreshRefusedError
from millrace.api.users.store import AccessConflictError
from tests.api.conftest import CHEAP_HASHER

NAMES = st.sampled_from(["ann", "bob", "cyd"])
ROLE_SETS = st.sampled_from(
    [["viewer"], ["operator"], ["admin"], ["auditor"], ["viewer", "auditor"]]
)
AUDITOR = frozenset({"audits:read", "status:read"})
PASSWORD = "a long enough passphrase"


def expected_permissions(roles: list[str]) -> frozenset[str]:
    found: frozenset[str] = frozenset()
    for r in roles:
        found |= AUDITOR if r == "auditor" else BUILTIN_ROLES[r]
    return found


class AccessLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.access = AccessControl(KeyStore(None), hasher=CHEAP_HASHER)
        self.access.users.put_role("auditor", sorted(AUDITOR), "test")
        # the model
        self.users: dict[str, tuple[list[str], bool]] = {}
        self.live: dict[str, str] = {}  # sid -> username
        self.current: dict[str, str] = {}  # refresh token -> sid (unused)
        self.used: dict[str, str] = {}  # refresh token -> sid (rotated away)
        self.tokens: list[tuple[str, str]] = []  # (access token, sid)

    def _end_sid(self, sid: str) -> None:
        self.live.pop(sid, None)
        for book in (self.current, self.used):
            for t in [t for t, s in book.items() if s == sid]:
                del book[t]

    def _end_user(self, name: str) -> None:
        for sid in [s for s, u in self.live.items() if u == name]:
            self._end_sid(sid)

    def _admins(self, without: str) -> int:
        return sum(1 for n, (r, e) in self.users.items() if n != without and e and "admin" in r)

    @rule(name=NAMES, roles=ROLE_SETS)
    def create(self, name: str, roles: list[str]) -> None:
        digest = CHEAP_HASHER.hash(PASSWORD)
        if name in self.users:
            try:
                self.access.users.create(name, digest, roles=roles)
            except AccessConflictError:
                return
            raise AssertionError("created a user twice")
        self.access.users.create(name, digest, roles=roles)
        self.users[name] = (list(roles), True)

    @rule(name=NAMES)
    def login(self, name: str) -> None:
        user = self.access.users.get(name)
        ok = user is not None and user.enabled and CHEAP_HASHER.verify(user.password_hash, PASSWORD)
        assert ok == (name in self.users and self.users[name][1])
        if not ok:
            return
        sid, refresh = self.access.sessions.start(name)
        token, _ = self.access.signing.issue(name, sid)
        self.live[sid] = name
        self.current[refresh] = sid
        self.tokens.append((token, sid))

    @precondition(lambda self: self.current or self.used)
    @rule(data=st.data())
    def refresh(self, data: st.DataObject) -> None:
        # in the order the tokens came (the rules' order): the tokens themselves are
        # random, so sorting them made a replay of the same steps pick another token,
        # and hypothesis failed the run as an inconsistent data generation
        token = data.draw(st.sampled_from([*self.current, *self.used]))
        sid = self.current.get(token) or self.used[token]
        try:
            username, got_sid, nxt = self.access.sessions.rotate(token)
        except RefreshRefusedError as exc:
            assert token in self.used, "a current refresh token was refused"
            assert exc.reused
            self._end_sid(sid)
            return
        assert token in self.current and got_sid == sid and username == self.live[sid]
        del self.current[token]
        self.used[token] = sid
        self.current[nxt] = sid
        access, _ = self.access.signing.issue(username, sid)
        self.tokens.append((access, sid))

    @rule(name=NAMES, enabled=st.booleans())
    def set_enabled(self, name: str, enabled: bool) -> None:
        self._update(name, enabled=enabled)

    @rule(name=NAMES, roles=ROLE_SETS)
    def change_roles(self, name: str, roles: list[str]) -> None:
        self._update(name, roles=roles)

    def _update(self, name: str, **changes: object) -> None:
        if name not in self.users:
            return
        roles, enabled = self.users[name]
        new_roles = list(changes.get("roles", roles))  # type: ignore[call-overload]
        new_enabled = bool(changes.get("enabled", enabled))
        losing_admin = enabled and "admin" in roles and not (new_enabled and "admin" in new_roles)
        try:
            self.access.users.update(name, **changes)
        except AccessConflictError:
            assert losing_admin and self._admins(name) == 0
            return
        assert not (losing_admin and self._admins(name) == 0)
        self.users[name] = (new_roles, new_enabled)
        if not new_enabled:  # what the route does
            self.access.sessions.end_user(name)
            self._end_user(name)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        if name not in self.users:
            return
        roles, enabled = self.users[name]
        try:
            self.access.users.delete(name)
        except AccessConflictError:
            assert enabled and "admin" in roles and self._admins(name) == 0
            return
        del self.users[name]
        self.access.sessions.end_user(name)
        self._end_user(name)

    @invariant()
    def every_token_is_judged_as_the_model_says(self) -> None:
        for token, sid in self.tokens:
            principal = self.access.authenticate(token)
            name = self.live.get(sid)
            if name is None or name not in self.users or not self.users[name][1]:
                assert principal is None, (sid, name)
                continue
            assert principal is not None and principal.name == name
            assert principal.granted == expected_permissions(self.users[name][0])


TestAccessLifecycle = AccessLifecycle.TestCase
TestAccessLifecycle.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
