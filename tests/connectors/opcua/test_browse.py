"""browse() lists the variables of a real asyncua Server."""

from __future__ import annotations

import pytest
from asyncua import ua

from millrace.connectors.opcua.browse import browse
from millrace.connectors.opcua.config import parse_node_ref
from millrace.pipeline.errors import ConnectorError

from .conftest import OpcServer, Users, free_port, nid

pytestmark = pytest.mark.integration


async def test_browse_lists_variables_with_type_value_and_path() -> None:
    srv = await OpcServer(
        free_port(),
        {
            "Temp": (21.5, ua.VariantType.Double, False),
            "Setpoint": (7, ua.VariantType.Int16, True),
            "Name": ("press", ua.VariantType.String, False),
        },
        user_manager=Users(),
        identity_tokens=[ua.UserNameIdentityToken],
    ).start()
    try:
        assert srv.server is not None
        plant = srv.server.get_node(nid("Plant"))
        line = await plant.add_object(nid("Line.1"), ua.QualifiedName("Line.1", 2))
        await line.add_variable(nid("Deep"), ua.QualifiedName("Deep", 2), True)
        await srv.server.get_node(nid("Temp")).add_property(
            nid("Temp.EU"), ua.QualifiedName("EU", 2), "degC"
        )

        found = await browse(srv.url, username="operator", password="s3cret")
        by_id = {n.node_id: n for n in found}
        assert set(by_id) == {"ns=2;s=Temp", "ns=2;s=Setpoint", "ns=2;s=Name", "ns=2;s=Deep"}
        temp, sp, deep = by_id["ns=2;s=Temp"], by_id["ns=2;s=Setpoint"], by_id["ns=2;s=Deep"]
        assert (temp.path, temp.data_type, temp.value, temp.quality) == (
            "/2:Plant/2:Temp",
            "Double",
            21.5,
            0,
        )
        assert (sp.data_type, sp.value, sp.writable, temp.writable) == ("Int16", 7, True, False)
        assert temp.browse_name == "2:Temp" and temp.display_name == "Temp"
        # names with reserved characters are escaped, and the path parses back
        assert deep.path == "/2:Plant/2:Line&.1/2:Deep"
        assert parse_node_ref(deep.path).elements == ((2, "Plant"), (2, "Line.1"), (2, "Deep"))

        shallow = await browse(srv.url, username="operator", password="s3cret", depth=2)
        assert {n.node_id for n in shallow} == {"ns=2;s=Temp", "ns=2;s=Setpoint", "ns=2;s=Name"}
        props = await browse(
            srv.url,
            start="ns=2;s=Plant",
            username="operator",
            password="s3cret",
            include_properties=True,
        )
        assert by_id.keys() | {"ns=2;s=Temp.EU"} == {n.node_id for n in props}
        assert {n.path for n in props if n.node_id == "ns=2;s=Temp.EU"} == {"/2:Temp/2:EU"}

        with pytest.raises(ConnectorError, match="Login refused"):
            await browse(srv.url, username="operator", password="nope")
    finally:
        await srv.stop()
    with pytest.raises(ConnectorError, match="Connection refused"):
        await browse(srv.url)
