"""The topics of DESIGN.md and the Avro record each carries."""

TELEMETRY = "telemetry"
IDENTITY = "identity"
COMMANDS = "commands"
STATUS = "status"
ALARMS = "alarms"
AUDIT = "audit"
TASKS = "tasks"
SERVICES = "services"
DEADLETTER = "deadletter"

#: topic -> full name of the Avro record its values carry
TOPIC_SCHEMAS: dict[str, str] = {
    TELEMETRY: "io.millrace.events.TelemetryBatch",
    IDENTITY: "io.millrace.events.IdentityEvent",
    COMMANDS: "io.millrace.events.Command",
    STATUS: "io.millrace.events.ResourceStatus",
    ALARMS: "io.millrace.events.AlarmEvent",
    AUDIT: "io.millrace.events.AuditEvent",
    TASKS: "io.millrace.events.TaskEvent",
    SERVICES: "io.millrace.events.ServiceEvent",
    DEADLETTER: "io.millrace.events.DeadLetter",
}

ALL_TOPICS: tuple[str, ...] = tuple(TOPIC_SCHEMAS)
