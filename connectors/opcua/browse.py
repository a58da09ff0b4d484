"""Browse an OPC UA server's address space for variables (``millrace browse``).

Walks the hierarchical references forward from a start node (the Objects folder by
default) breadth first, to ``depth`` levels, and lists each variable with its node id,
browse path, data type, access and current value, so that commissioning endpoints is
a matter of copying lines. Attributes are read in batches (one Read per level), not
one request per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua

from .client import close_quietly, connect_error, make_client
from .config import OpcuaConnection, SecurityMode, SecurityPolicy, escape_name
from .values import quality, telemetry_value

_READ_BATCH = 500


@dataclass(frozen=True)
class BrowsedNode:
    """One variable found by :func:`browse`.

    ``path`` is the browse path from the start node (``/2:Plant/2:Temp``); from the
    Objects folder it is usable as an endpoint ``node_id`` like ``node_id`` itself.
    ``value`` is converted as the connector would report it; ``quality`` is its
    status code (0 = Good)."""

    node_id: str
    browse_name: str
    display_name: str
    path: str
    data_type: str
    value: Any
    quality: int
    writable: bool


async def browse(
    url: str | None = None,
    *,
    start: str | None = None,
    depth: int = 5,
    username: str | None = None,
    password: str | None = None,
    security_policy: SecurityPolicy = "None",
    security_mode: SecurityMode = "None",
    certificate: str | None = None,
    private_key: str | None = None,
    server_certificate: str | None = None,
    timeout_s: float = 4.0,
    include_properties: bool = False,
    include_server: bool = False,
    max_nodes: int = 10_000,
    connection: OpcuaConnection | None = None,
) -> list[BrowsedNode]:
    """The variables under ``start`` (a node id; default the Objects folder), at most
    ``depth`` references deep and at most ``max_nodes`` of them.

    Either ``url`` (with the login and security arguments) or ``connection`` (a
    commissioned connection, whose settings are used as they are) says where.
    Properties (HasProperty children such as EngineeringUnits) are skipped unless
    ``include_properties``, and the Server object's diagnostics unless
    ``include_server``. Raises ConnectorError with a user-facing reason when the
    server cannot be reached or refuses the login."""
    if connection is None:
        if url is None:
            raise ValueError("browse needs a url or a connection")
        connection = OpcuaConnection(
            protocol="opcua",
            url=url,
            username=username,
            password=password,
            security_policy=security_policy,
            security_mode=security_mode,
            certificate=certificate,
            private_key=private_key,
            server_certificate=server_certificate,
            timeout_ms=max(100, int(timeout_s * 1000)),
            session_name="millrace browse",
        )
    try:
        client = await make_client(connection)
        await client.connect()
    except Exception as exc:
        raise connect_error(exc, connection) from exc
    try:
        return await _walk(client, start, depth, include_properties, include_server, max_nodes)
    finally:
        await close_quietly(client, connection.timeout_ms / 1000)


async def _walk(
    client: Client,
    start: str | None,
    depth: int,
    include_properties: bool,
    include_server: bool,
    max_nodes: int,
) -> list[BrowsedNode]:
    root = ua.NodeId.from_string(start) if start else _std(ua.ObjectIds.ObjectsFolder)
    skip = set() if include_server else {_std(ua.ObjectIds.Server)}
    seen: set[ua.NodeId] = {root}
    level: list[tuple[ua.NodeId, str]] = [(root, "")]
    found: list[tuple[ua.ReferenceDescription, str]] = []
    for _ in range(max(0, depth)):
        if not level or len(found) >= max_nodes:
            break
        nxt: list[tuple[ua.NodeId, str]] = []
        for nodeid, path in level:
            for ref in await client.get_node(nodeid).get_children_descriptions():
                target = ref.NodeId
                if target in seen or target in skip:
                    continue
                if not include_properties and ref.ReferenceTypeId == _HAS_PROPERTY:
                    continue
                seen.add(target)
                q = ref.BrowseName
                child = f"{path}/{q.NamespaceIndex}:{escape_name(q.Name or '')}"
                if ref.NodeClass == ua.NodeClass.Variable and len(found) < max_nodes:
                    found.append((ref, child))
                if ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                    nxt.append((target, child))
        level = nxt
    return await _describe(client, found)


async def _describe(
    client: Client, found: list[tuple[ua.ReferenceDescription, str]]
) -> list[BrowsedNode]:
    out: list[BrowsedNode] = []
    type_names: dict[ua.NodeId, str] = {}
    for i in range(0, len(found), _READ_BATCH):
        chunk = found[i : i + _READ_BATCH]
        ids = [ref.NodeId for ref, _ in chunk]
        values = await _read(client, ids, ua.AttributeIds.Value)
        types = await _read(client, ids, ua.AttributeIds.DataType)
        access = await _read(client, ids, ua.AttributeIds.UserAccessLevel)
        await _type_names(client, [_val(t) for t in types], type_names)
        for (ref, path), v, t, a in zip(chunk, values, types, access, strict=True):
            code = v.StatusCode.value if v.StatusCode is not None else 0
            try:
                value = telemetry_value(_val(v))
            except Exception:
                value = repr(_val(v))
            level = _val(a)
            dtype = _val(t)
            out.append(
                BrowsedNode(
                    node_id=ref.NodeId.to_string(),
                    browse_name=ref.BrowseName.to_string(),
                    display_name=ref.DisplayName.Text or "",
                    path=path,
                    data_type=type_names.get(dtype, "") if isinstance(dtype, ua.NodeId) else "",
                    value=value,
                    quality=quality(code),
                    writable=isinstance(level, int)
                    and bool(level & (1 << ua.AccessLevel.CurrentWrite)),
                )
            )
    return out


def _std(identifier: int) -> ua.NodeId:
    """A standard (namespace 0) node id."""
    return ua.NodeId(ua.Int32(identifier), ua.Int16(0))


_HAS_PROPERTY = _std(ua.ObjectIds.HasProperty)


def _val(dv: ua.DataValue) -> Any:
    return dv.Value.Value if dv.Value is not None else None


async def _read(client: Client, ids: list[ua.NodeId], attr: ua.AttributeIds) -> list[ua.DataValue]:
    params = ua.ReadParameters()
    params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attr) for n in ids]
    params.TimestampsToReturn = ua.TimestampsToReturn.Neither
    return list(await client.uaclient.read(params))


async def _type_names(client: Client, dtypes: list[Any], names: dict[ua.NodeId, str]) -> None:
    """Names of data types: standard ones from the built-in table, others read once."""
    unknown: list[ua.NodeId] = []
    for t in dtypes:
        if not isinstance(t, ua.NodeId) or t in names or t in unknown:
            continue
        if t.NamespaceIndex == 0 and isinstance(t.Identifier, int):
            name = ua.ObjectIdNames.get(t.Identifier)
            if name:
                names[t] = name
                continue
        unknown.append(t)
    if unknown:
        for t, dv in zip(
            unknown, await _read(client, unknown, ua.AttributeIds.BrowseName), strict=True
        ):
            q = _val(dv)
            names[t] = q.Name if isinstance(q, ua.QualifiedName) else t.to_string()
