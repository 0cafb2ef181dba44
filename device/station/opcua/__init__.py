"""OPC UA for the station: an optional server for PLCs and SCADA that speak OPC UA rather than MQTT.

`OpcUaServer` exposes state, counters, the last result per part (and a `ResultReadyEventType` event per
part) and the threshold, writable by the operator login only and only through the runtime's `execute`.
The node tree follows the Machine Vision companion spec (OPC 40100) where it fits; see `nodes.py`. Secure by
default: Basic256Sha256 endpoints with a certificate of its own (`certificate.py`), SecurityPolicy None only
where the settings allow it, access levels per session (`access.py`).
"""

from device.station.opcua.contract import CommandExecutor, PartResult, StatusProvider
from device.station.opcua.nodes import (
    EVENT_FIELDS,
    LAST_RESULT,
    ROOT,
    THRESHOLD,
    VARIABLES,
    VISION_STATES,
    node_id,
)
from device.station.opcua.server import OpcUaError, OpcUaServer

__all__ = [
    "EVENT_FIELDS",
    "LAST_RESULT",
    "ROOT",
    "THRESHOLD",
    "VARIABLES",
    "VISION_STATES",
    "CommandExecutor",
    "OpcUaError",
    "OpcUaServer",
    "PartResult",
    "StatusProvider",
    "node_id",
]
