"""Alarm rules: what raises an alarm, for which devices, and how loudly.

A rule watches one signal of the identities whose name matches ``identity`` (a regular
expression, whole match), or — for ``resource_deviation`` — the connector resources
whose ids match. Kinds:

``limit``
    high and/or low limit with a deadband (hysteresis: raised above ``high``, cleared
    only below ``high - deadband``; mirrored for ``low``) and on/off delays (the
    condition must hold for ``on_delay_s`` before the alarm is raised, and be gone for
    ``off_delay_s`` before it clears).
``rate_of_change``
    the signal changes faster than ``max_rate`` units per second between two samples.
``stale``
    no sample of the signal for ``timeout_s`` (the resource timeout).
``equals``
    the signal equals ``value`` (boolean, string or number).
``deviation``
    an operator's set value differs from the reported one for longer than ``for_s``.
``resource_deviation``
    a connector resource's current state differs from its desired state for longer than
    ``for_s`` (ResourceStatus events); the alarm's identity is the resource id.

Every rule has a type name (what operators filter by: ``high_temperature``), a priority
0..255, a message template (``{identity}``, ``{signal}``, ``{value}``, ``{limit}``,
``{rule}``, ``{type}``; unknown names are left as written) and whether an
acknowledgement is required. Rules travel as AlarmEvents (RULE_DEFINED with the rule as
JSON, RULE_REMOVED) on the ``alarms`` topic, so they are replayed like everything else.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from millrace.pipeline.errors import ConfigError
from millrace.pipeline.events import alarm_event

RULE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
Kind = Literal["limit", "rate_of_change", "stale", "equals", "deviation", "resource_deviation"]
KINDS: tuple[str, ...] = (
    "limit",
    "rate_of_change",
    "stale",
    "equals",
    "deviation",
    "resource_deviation",
)
#: kinds that watch a signal of identities (all but resource_deviation)
SIGNAL_KINDS = frozenset(KINDS) - {"resource_deviation"}
#: the key of rule events on the alarms topic
RULE_KEY_PREFIX = "rule:"

Number = StrictInt | StrictFloat


class RuleError(ConfigError, ValueError):
    """A rule that cannot be accepted; ``field`` is its JSON path (``high``, ``identity``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AlarmRule(BaseModel):
    """One alarm rule (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(..., description="unique rule id", pattern=RULE_ID_RE.pattern)
    kind: Kind
    type: str = Field(
        "",
        max_length=128,
        description="the alarm type operators filter by, e.g. high_temperature (default: kind)",
    )
    priority: int = Field(100, ge=0, le=255, description="0 (lowest) .. 255 (highest)")
    message: str = Field(
        "", max_length=1024, description="template: {identity} {signal} {value} {limit} {rule}"
    )
    requires_ack: bool = Field(True, description="stays open until acknowledged")
    enabled: bool = True
    description: str = Field("", max_length=1024)
    identity: str = Field(".*", max_length=512, description="regular expression, whole match")
    signal: str | None = Field(None, max_length=128, description="the watched signal")
    # limit
    high: Number | None = None
    low: Number | None = None
    deadband: Number = Field(0, ge=0, description="hysteresis, in the signal's units")
    on_delay_s: Number = Field(0, ge=0, le=86_400)
    off_delay_s: Number = Field(0, ge=0, le=86_400)
    # rate_of_change
    max_rate: Number | None = Field(None, gt=0, description="units per second")
    # stale
    timeout_s: Number | None = Field(None, gt=0, le=30 * 86_400)
    # equals
    value: StrictBool | StrictInt | StrictFloat | StrictStr | None = None
    # deviation, resource_deviation
    for_s: Number = Field(0, ge=0, le=30 * 86_400)
    service_ids: list[str] = Field(default_factory=list, max_length=256)
    resource_ids: str = Field(".*", max_length=512, description="regular expression")

    @field_validator("identity", "resource_ids")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @field_validator("message")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            parsed = list(string.Formatter().parse(v))
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        for _, _, spec, _ in parsed:
            # a width or precision of millions would build a huge string per alarm
            if spec and any(int(n) > 64 for n in re.findall(r"\d+", spec)):
                raise ValueError(f"format spec {spec!r}: widths and precisions up to 64")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AlarmRule:
        k = self.kind
        if k in SIGNAL_KINDS and not self.signal:
            raise RuleError("signal", f"a {k} rule needs the signal it watches")
        if k == "limit":
            if self.high is None and self.low is None:
                raise RuleError("high", "a limit rule needs high, low or both")
            if self.high is not None and self.low is not None:
                if self.low >= self.high:
                    raise RuleError("low", f"low {self.low} must be below high {self.high}")
                if self.deadband >= self.high - self.low:
                    raise RuleError(
                        "deadband",
                        f"deadband {self.deadband} must be smaller than high - low "
                        f"({self.high - self.low})",
                    )
        if k == "rate_of_change" and self.max_rate is None:
            raise RuleError("max_rate", "a rate_of_change rule needs max_rate")
        if k == "stale" and self.timeout_s is None:
            raise RuleError("timeout_s", "a stale rule needs timeout_s")
        if k == "equals" and self.value is None:
            raise RuleError("value", "an equals rule needs the value")
        return self

    @property
    def type_name(self) -> str:
        return self.type or self.kind

    def matches_identity(self, identity: str) -> bool:
        return _compiled(self.identity).fullmatch(identity) is not None

    def matches_resource(self, resource_id: str, service_id: str) -> bool:
        if self.service_ids and service_id not in self.service_ids:
            return False
        return _compiled(self.resource_ids).fullmatch(resource_id) is not None

    def render(self, identity: str, signal: str | None, value: Any, limit: Any = None) -> str:
        """The alarm text from the template (a default one when it is empty)."""
        template = self.message or _DEFAULT_MESSAGES[self.kind]
        fields = {
            "identity": identity,
            "signal": signal or "",
            "value": "" if value is None else value,
            "limit": "" if limit is None else limit,
            "rule": self.id,
            "type": self.type_name,
        }
        return _format(template, fields)[:4096]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_defaults=False), sort_keys=True)


_DEFAULT_MESSAGES = {
    "limit": "{signal} of {identity} is {value} (limit {limit})",
    "rate_of_change": "{signal} of {identity} changes too fast ({value}/s, limit {limit}/s)",
    "stale": "{signal} of {identity} sent nothing for {limit} s",
    "equals": "{signal} of {identity} is {value}",
    "deviation": "{signal} of {identity} reports {value}, set to {limit}",
    "resource_deviation": "{identity} is {value}, should be {limit}",
}


def _format(template: str, fields: dict[str, Any]) -> str:
    """``template`` with its plain ``{name}`` fields filled in; never raises (rendering
    runs inside the evaluator): other fields (``{0}``, ``{value.attr}``, unknown names)
    stay as written, and a format spec that does not suit the value (``{value:.1f}`` of
    a string) falls back to the plain value."""
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in fields:
            conv = f"!{conversion}" if conversion else ""
            out.append("{" + name + conv + (f":{spec}" if spec else "") + "}")
            continue
        value = fields[name]
        try:
            if conversion:
                convert: dict[str, Callable[[object], str]] = {"r": repr, "s": str, "a": ascii}
                value = convert[conversion](value)
            out.append(format(value, spec or ""))
        except (KeyError, ValueError, TypeError):
            out.append(str(value))
    return "".join(out)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    rx = _REGEX_CACHE.get(pattern)
    if rx is None:
        if len(_REGEX_CACHE) > 4096:
            _REGEX_CACHE.clear()
        rx = _REGEX_CACHE[pattern] = re.compile(pattern)
    return rx


def parse_rule(data: Any) -> AlarmRule:
    """Validate ``data`` (a dict, or JSON text) into a rule; :class:`RuleError` names the
    first offending field (``errors`` of :func:`rule_problems` lists them all)."""
    problems = rule_problems(data)
    if problems:
        raise RuleError(*problems[0])
    return AlarmRule.model_validate(json.loads(data) if isinstance(data, str) else data)


def rule_problems(data: Any) -> list[tuple[str, str]]:
    """Every problem of ``data`` as (field, message); empty when it is a valid rule."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            return [("$", f"not JSON: {exc}")]
    if not isinstance(data, dict):
        return [("$", "a rule is an object")]
    try:
        AlarmRule.model_validate(data)
    except RuleError as exc:
        return [(exc.field, exc.message)]
    except ValidationError as exc:
        out: list[tuple[str, str]] = []
        # a union field (high: int | float) fails once per member, its loc tagged with
        # the member (high.int, high.float): report it once, under the field's name
        members: dict[str, list[tuple[str, str]]] = {}
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, RuleError):
                out.append((ctx_err.field, ctx_err.message))
                continue
            parts = err["loc"][:1] + tuple(p for p in err["loc"][1:] if isinstance(p, int))
            loc = ".".join(str(p) for p in parts) or "$"
            tags = [p for p in err["loc"][1:] if isinstance(p, str)]
            if not tags:
                out.append((loc, err["msg"]))
                continue
            if loc not in members:
                members[loc] = []
                out.append((loc, ""))
            members[loc].append((tags[0], err["msg"]))
        return [(loc, msg or _union_message(members[loc])) for loc, msg in out]
    return []


def _union_message(errors: list[tuple[str, str]]) -> str:
    """One message for the failures of every member of a union: a constraint a member's
    type met (``finite number``) says most, else the types that were expected."""
    for _, msg in errors:
        if not msg.startswith("Input should be a valid"):
            return msg
    return "expected " + " or ".join(tag for tag, _ in errors)


def rule_event(
    rule: AlarmRule | None, rule_id: str, ts_us: int, user: str | None
) -> dict[str, Any]:
    """The AlarmEvent defining ``rule`` (or removing ``rule_id`` when ``rule`` is None)."""
    if rule is None:
        return alarm_event(
            rule_id,
            "RULE_REMOVED",
            ts_us=ts_us,
            rule_id=rule_id,
            rule_type="",
            identity="*",
            priority=0,
            message="",
            user=user,
        )
    return alarm_event(
        rule_id,
        "RULE_DEFINED",
        ts_us=ts_us,
        rule_id=rule_id,
        rule_type=rule.type_name,
        identity="*",
        signal=rule.signal,
        priority=rule.priority,
        message=rule.description,
        user=user,
        requires_ack=rule.requires_ack,
        definition=rule.to_json(),
    )
