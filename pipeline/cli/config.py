"""The configuration file of ``millrace run`` and its environment overrides.

```yaml
data_dir: ./data
api: {host: 127.0.0.1, port: 8080, sql_max_rows: 100000, sql_timeout_s: 10}
ingest: {max_batch_samples: 10000, strict_signals: false, signals: []}
log: {fsync: batch, partitions: 4, retention_ms: null, retention_bytes: null}
runtime: {max_records: 5000, gc: {enabled: true, freeze: true, gen0: 100000}}
simulator: {devices: 100, signals: 10, interval_ms: 1000}
archive: {url: s3://bucket/millrace, window: 1h, codec: zstandard, storage_options: {}}
restore: {allowed_url_prefixes: [s3://bucket/exports/], chunk_records: 20000}
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from millrace.api.server_limits import ServerLimits
from millrace.connectors.simulator import SimulatorConfig
from millrace.pipeline.alarms.config import AlarmsConfig
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.identities.config import RegistryConfig
from millrace.pipeline.restore.config import RestoreConfig
from millrace.pipeline.runtime.gc_policy import GcConfig
from millrace.pipeline.runtime.worker_config import WorkerConfig

if TYPE_CHECKING:
    from millrace.connectors.commissioning import Commissioning
from millrace.pipeline.log.local import LocalLogConfig


class AuthConfig(BaseModel):
    """Sign-in of users (``api.users``): token lifetimes, login lockout, password policy."""

    model_config = ConfigDict(extra="forbid")
    access_token_ttl_s: float = Field(900.0, ge=60, le=86_400, description="JWT lifetime")
    refresh_ttl_s: float = Field(
        7 * 86_400.0, ge=300, description="a session ends this long after its last refresh"
    )
    login_max_user_failures: int = Field(5, ge=1, description="failures locking a username")
    login_max_address_failures: int = Field(20, ge=1, description="failures locking an address")
    login_window_s: float = Field(900.0, gt=0, description="failures counted over this window")
    login_lock_s: float = Field(900.0, gt=0, description="how long a lockout lasts")
    login_failure_delay_s: float = Field(0.5, ge=0, le=10, description="wait before a 401")
    password_min_length: int = Field(12, ge=8, le=1024)
    common_passwords_file: Path | None = Field(
        None, description="more common passwords to refuse, one a line (besides the shipped list)"
    )


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    sql_max_rows: int = Field(100_000, ge=1)
    sql_timeout_s: float = Field(10.0, gt=0)
    sql_max_memory_bytes: int = Field(1 << 30, ge=1 << 20, description="per analyst query")
    sql_max_rows_to_read: int = Field(1_000_000_000, ge=1)
    sql_max_bytes_to_read: int = Field(10 << 30, ge=1)
    sql_max_result_bytes: int = Field(32 << 20, ge=1)
    sql_max_threads: int = Field(1, ge=1, le=64, description="threads per analyst query")
    sql_max_concurrent: int = Field(
        2,
        ge=1,
        description="analyst queries at once (429 beyond); at most sql_sessions, since a "
        "query admitted beyond the sessions would only wait holding its slot",
    )
    sql_max_concurrent_per_principal: int = Field(1, ge=1, description="per API key")
    read_sessions: int = Field(
        3, ge=1, le=64, description="chDB sessions for API reads: reads that run at once"
    )
    sql_sessions: int = Field(
        2, ge=1, le=16, description="chDB sessions and threads for analyst SQL: queries at once"
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="request body limit of every route but ingest"
    )
    provision_max_body_bytes: int = Field(16 * 1024, ge=1024)
    stream_max_connections: int = Field(
        1000, ge=1, description="live streams (SSE) the server keeps at once (503 beyond)"
    )
    stream_max_per_key: int = Field(
        20, ge=1, description="live streams one API key may have open (429 beyond)"
    )
    server: ServerLimits = Field(
        default_factory=ServerLimits, description="connection and timing limits (api.server)"
    )
    metrics_open: bool = Field(
        False, description="GET /metrics answers without an API key (a trusted scraper)"
    )
    ready_max_lag: int = Field(
        1_000_000, ge=0, description="/health/ready fails while the runtime is more records behind"
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="users' sign-in")
    console_preload: bool = Field(
        True,
        description="load the web console in the background a second after the start, "
        "so the first page is as fast as the next (false: on its first request, ~0.5 s of "
        "CPU saved by a process that never serves a page)",
    )

    def sql_limits(self) -> dict[str, Any]:
        """The analyst SQL limits, as ``api.context.ApiSettings`` names them."""
        limits = {
            name: getattr(self, name)
            for name in (
                "sql_max_rows",
                "sql_timeout_s",
                "sql_max_memory_bytes",
                "sql_max_rows_to_read",
                "sql_max_bytes_to_read",
                "sql_max_result_bytes",
                "sql_max_threads",
                "sql_max_concurrent",
                "sql_max_concurrent_per_principal",
            )
        }
        limits["sql_max_concurrent"] = min(self.sql_max_concurrent, self.sql_sessions)
        return limits


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch_samples: int = Field(10_000, ge=1)
    max_batch_readings: int = Field(100_000, ge=1, description="signal values per request")
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="request body limit of ingest; default: what max_batch_samples "
        "samples with max_batch_readings readings take as JSON (api.limits)",
    )
    strict_signals: bool = False
    signals: list[str] = []
    idempotency_window_s: int = Field(
        86_400,
        ge=1,
        description="how long a batch id is applied once: an HTTP retry with the same "
        "Idempotency-Key answers like its first call, and the telemetry fold drops a "
        "batch id (HTTP, MQTT redelivery, store-and-forward resend, restore) it applied",
    )
    batch_filter_mib: int = Field(
        16,
        ge=1,
        description="memory per telemetry partition for the batch ids of the window (a "
        "Bloom filter: a false hit costs a store query, never a batch); about 3.6 bytes "
        "per id of the window keep those queries rare (pipeline.batch_ledger)",
    )


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_records: int = Field(5000, ge=1, description="records per partition per batch")
    idle_sleep_ms: int = Field(50, ge=1)
    linger_ms: int = Field(
        1000,
        ge=0,
        le=10_000,
        description="a step that folded something is followed by the next no sooner than "
        "this after it began, unless a read-your-writes wait wakes the runtime: a trickle "
        "of connector batches is folded in one larger step a second (each step costs a "
        "dozen inserts; ClickHouse asks for no more than one insert a second per table); "
        "a backlog is folded without pause; 0 folds each arrival at once",
    )
    linger_below: int = Field(
        1000,
        ge=1,
        description="records (batches) a step folds from which the next follows at once: "
        "steady loads keep their latency",
    )
    gc: GcConfig = Field(
        default_factory=GcConfig, description="the collector's policy (pipeline.runtime.gc_policy)"
    )
    worker: WorkerConfig = Field(
        default_factory=WorkerConfig,
        description="decode and fold telemetry in a child process (pipeline.runtime.worker)",
    )


class DistributedConfig(BaseModel):
    """Where the distributed deployment's log and store are."""

    model_config = ConfigDict(extra="forbid")
    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port]")
    topic_prefix: str = ""
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    clickhouse_url: str | None = Field(
        None, description="clickhouse://user:password@host:9000/default"
    )
    clickhouse_cluster: str | None = Field(
        None,
        description="a cluster of the server's remote_servers: projections become "
        "replicated _local tables with Distributed tables over them (ON CLUSTER)",
    )
    leader_session_timeout_s: float = Field(
        10.0,
        ge=2.0,
        le=300.0,
        description="the singleton stages' leader groups (alarm runner, identity watch): "
        "how long the group waits for a silent leader before another process of the "
        "process role takes over (a broker accepts what lies within its "
        "group.min/max.session.timeout.ms, 6 s to 30 min by default)",
    )


class MillraceConfig(BaseModel):
    """Everything ``millrace run`` (and the distributed commands) need.

    The connectors come from a commissioning file: either its sections right here
    (``service``, ``connections``, ``endpoints``, ``mappings``) or a separate file
    named by ``commissioning``. They are validated by
    ``connectors.commissioning`` (see :func:`commissioning_of`).
    """

    model_config = ConfigDict(extra="forbid")
    data_dir: Path = Path("./data")
    runner_name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\s/][^\s]*$",
        description="this process's name in runner heartbeats and resource states (the "
        "host name by default); give each its own where several processes of one role "
        "run on a host",
    )
    commissioning: Path | None = Field(None, description="a separate commissioning file")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="the commissioning sections' parameters (name: {type, default, "
        "description}), given with --param name=value (connectors.parameters)",
    )
    service: str | None = None
    description: str = ""
    version: int = 1
    connections: dict[str, Any] = {}
    endpoints: list[Any] = []
    mappings: list[Any] = []
    distributed: DistributedConfig = DistributedConfig()
    api: ApiConfig = ApiConfig()
    ingest: IngestConfig = IngestConfig()
    log: LocalLogConfig = LocalLogConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    identities: RegistryConfig = RegistryConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    archive: ArchiveConfig = ArchiveConfig()
    restore: RestoreConfig = RestoreConfig()


ENV_OVERRIDES = {
    "MILLRACE_DATA_DIR": ("data_dir",),
    "MILLRACE_RUNNER_NAME": ("runner_name",),
    "MILLRACE_HOST": ("api", "host"),
    "MILLRACE_PORT": ("api", "port"),
    "MILLRACE_CONSOLE_PRELOAD": ("api", "console_preload"),
    "MILLRACE_FSYNC": ("log", "fsync"),
    "MILLRACE_KAFKA_BOOTSTRAP": ("distributed", "kafka_bootstrap"),
    "MILLRACE_TOPIC_PREFIX": ("distributed", "topic_prefix"),
    "MILLRACE_CLICKHOUSE_URL": ("distributed", "clickhouse_url"),
    "MILLRACE_CLICKHOUSE_CLUSTER": ("distributed", "clickhouse_cluster"),
    "MILLRACE_ARCHIVE_URL": ("archive", "url"),
}


def commissioning_of(
    cfg: MillraceConfig, base: Path | None = None, params: Mapping[str, str] | None = None
) -> Commissioning | None:
    """The connectors to run: the file's own sections, or the file they name.

    Every violation is reported at once (ConfigError); ``${ENV}`` references must be
    set. ``base`` resolves a relative ``commissioning`` path (the config's folder). The
    ``simulator:`` section, when it has devices, is one more connection, ``simulator``
    (shorthand for ``protocol: simulator``; see ``connectors.simulator.section``).
    ``params``: values of the file's ``parameters:`` section as given on the command
    line (``--param name=value``), substituted as ``POST /services`` does.
    """
    from millrace.connectors.simulator.section import with_simulator

    return with_simulator(_commissioning_file(cfg, base, params or {}), cfg.simulator)


def _commissioning_file(
    cfg: MillraceConfig, base: Path | None, params: Mapping[str, str]
) -> Commissioning | None:
    from millrace.connectors.commissioning import load_commissioning

    if cfg.commissioning is not None:
        path = cfg.commissioning
        if base is not None and not path.is_absolute():
            path = base / path
        if not params and "parameters:" not in _read(path):
            return load_commissioning(path)
        try:
            doc = yaml.safe_load(_read(path))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        return _validated(_with_parameters(doc, params), f"{path}:\n")
    if not cfg.connections:
        if params:
            raise ConfigError("--param: the configuration has no commissioning sections")
        return None
    doc = {
        "version": cfg.version,
        "service": cfg.service or "default",
        "parameters": cfg.parameters,
        "connections": cfg.connections,
        "endpoints": cfg.endpoints,
        "mappings": cfg.mappings,
    }
    return _validated(_with_parameters(doc, params), "")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _with_parameters(doc: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """``doc`` with its ``parameters:`` substituted (``connectors.parameters.resolve``,
    what ``POST /services`` does): the given values, else the defaults; a required
    one not given, an unknown name or a wrong type is a ConfigError naming it. The
    service the file installs carries the substituted sections.

    A value is the text after ``=`` for a string parameter, otherwise read as JSON
    (``port=502`` is an integer, ``on=true`` a boolean)."""
    from millrace.connectors.parameters import declared, resolve

    if not doc.get("parameters") and not params:
        return {k: v for k, v in doc.items() if k != "parameters"}
    spec, _ = declared(doc)
    given = {name: param_value(raw, spec.get(name, {}).get("type")) for name, raw in params.items()}
    resolved, violations = resolve(doc, given)
    errors = [v for v in violations if v.level == "error"]
    if errors:
        raise ConfigError("\n".join(v.line() for v in errors))
    return resolved


def _validated(doc: dict[str, Any], where: str) -> Commissioning | None:
    from millrace.connectors.commissioning import validate_document

    result, violations = validate_document(doc)
    unset = [v for v in violations if v.level == "warning" and "environment" in v.description]
    if result is None or unset:
        errors = [v for v in violations if v.level == "error"] + unset
        raise ConfigError(where + "\n".join(v.line() for v in errors))
    return result


def param_value(raw: str, ptype: str | None = None) -> Any:
    """A ``--param`` value: its text for a string parameter, else read as JSON when it
    parses (``502`` an integer, ``true`` a boolean), else its text."""
    if ptype == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``--param name=value`` options (repeatable) as name -> the value's text."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {pair!r}: expected name=value")
        out[name] = raw
    return out


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


def load_config(
    path: Path | None = None, overrides: dict[tuple[str, ...], Any] | None = None
) -> MillraceConfig:
    """File (optional) < environment < explicit overrides (command-line flags)."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        doc = loaded
    if ("connections" in doc or "commissioning" in doc) and "simulator" not in doc:
        # a plant's file runs its own connectors, not the demo devices
        doc["simulator"] = {"devices": 0}
    for var, cfg_path in ENV_OVERRIDES.items():
        if os.environ.get(var):
            _set(doc, cfg_path, os.environ[var])
    for cfg_path, value in (overrides or {}).items():
        if value is not None:
            _set(doc, cfg_path, value)
    try:
        return MillraceConfig.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            lines.append(f"error {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc
