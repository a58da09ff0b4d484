"""The ``alarms:`` section of the configuration file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from millrace.pipeline.alarms.rules import AlarmRule


class AlarmsConfig(BaseModel):
    """Alarm rules from the file (defined as events at start when new or changed; rules
    created through the API are kept), and the evaluator's timer."""

    model_config = ConfigDict(extra="forbid")
    rules: list[AlarmRule] = Field(default_factory=list)
    tick_s: float = Field(1.0, gt=0, le=60, description="timer of time-based rules")

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[AlarmRule]) -> list[AlarmRule]:
        seen: set[str] = set()
        for i, r in enumerate(rules):
            if r.id in seen:
                raise ValueError(f"rules[{i}].id: duplicate rule id {r.id!r}")
            seen.add(r.id)
        return rules
