"""OPC UA connector: subscriptions on an OPC UA server (asyncua), command write-back
and browsing of the address space.

Only the configuration is imported here; the connector (``.connector``) and
``.browse`` import asyncua when they are used.
"""

from .config import OpcuaConnection, OpcuaEndpoint, parse_node_ref

__all__ = ["OpcuaConnection", "OpcuaEndpoint", "parse_node_ref"]
