"""MQTT connector: subscribes to a broker's topics and turns payloads into readings.

Endpoints map one topic filter to one signal (identity/signal may take topic levels),
payload mappings one JSON payload to many signals; writable endpoints publish commands
back. Importing this package does not import the MQTT client library (aiomqtt): the
connector class is loaded from :mod:`millrace.connectors.mqtt.connector` when it is started.
"""

from .config import MqttConnection, MqttEndpoint, MqttTls

__all__ = ["MqttConnection", "MqttEndpoint", "MqttTls"]
