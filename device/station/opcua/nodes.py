"""The station's OPC UA address space, laid out after the Machine Vision companion spec (OPC 40100).

`VisionSystem` mirrors `VisionSystemType` where it fits (`VisionStateMachine/CurrentState`,
`ConfigurationManagement`, `ResultManagement/Results`) with plain objects in our own namespace: the
40100 nodeset and its structured data types are not loaded, so PLCs read plain scalars. NodeIds are
strings (`ns=<ns>;s=VisionSystem.ResultManagement.Results.LastResult.Score`) and never change.

Recipes: `ConfigurationManagement.SelectRecipe(RecipeId: String) -> (Ok: Boolean, Message: String)` and
`PrepareRecipe` likewise (40100's `RecipeManagement` methods by name, with a plain String id instead of its
structured `RecipeIdExternalDataType`), their `InputArguments`/`OutputArguments` properties under string
NodeIds too (`...SelectRecipe.InputArguments`); `ConfigurationManagement.ActiveRecipe` is the active
recipe's name, "" when none is. Who may call them, and what a call does, is `server.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from device.station.opcua.contract import PartResult
from device.station.status import RuntimeStatus

ROOT = "VisionSystem"
THRESHOLD = "ConfigurationManagement.Threshold"
LAST_RESULT = "ResultManagement.Results.LastResult"
CONFIGURATION = "ConfigurationManagement"
ACTIVE_RECIPE = "ConfigurationManagement.ActiveRecipe"
SELECT_RECIPE = "ConfigurationManagement.SelectRecipe"
PREPARE_RECIPE = "ConfigurationManagement.PrepareRecipe"
RECIPE_METHODS = {  # method path -> its Description
    SELECT_RECIPE: "Switch product: frames captured from now on are judged under the named recipe.",
    PREPARE_RECIPE: "Load the named recipe's model ahead of SelectRecipe, so the switch is a swap.",
}

# OPC 40100 VisionStateMachine top-level states for the runtime's states (Error is not used yet).
VISION_STATES = {
    "starting": "Preoperational",
    "running": "Operational",
    "paused": "Operational",
    "stopped": "Halted",
}

# (path under VisionSystem, type, initial value); objects are created from the path prefixes.
_V = ua.VariantType
VARIABLES: tuple[tuple[str, ua.VariantType, Any], ...] = (
    ("State", _V.String, "starting"),
    ("VisionStateMachine.CurrentState", _V.LocalizedText, ua.LocalizedText("Preoperational")),
    ("Statistics.Frames", _V.UInt64, 0),
    ("Statistics.Defects", _V.UInt64, 0),
    ("Statistics.DroppedFrames", _V.UInt64, 0),
    ("Statistics.Fps", _V.Double, 0.0),
    (THRESHOLD, _V.Double, 0.0),
    ("ConfigurationManagement.CalibratedThreshold", _V.Double, 0.0),
    ("ConfigurationManagement.ModelName", _V.String, ""),
    ("ConfigurationManagement.ModelVersion", _V.String, ""),
    ("ConfigurationManagement.ModelSha256", _V.String, ""),
    (ACTIVE_RECIPE, _V.String, ""),
    (f"{LAST_RESULT}.ResultId", _V.String, ""),
    (f"{LAST_RESULT}.FrameId", _V.UInt64, 0),
    (f"{LAST_RESULT}.CreationTime", _V.DateTime, datetime.fromtimestamp(0, tz=timezone.utc)),
    (f"{LAST_RESULT}.Score", _V.Double, 0.0),
    (f"{LAST_RESULT}.Verdict", _V.String, ""),
    (f"{LAST_RESULT}.IsDefect", _V.Boolean, False),
    (f"{LAST_RESULT}.DefectClass", _V.String, ""),
    (f"{LAST_RESULT}.Threshold", _V.Double, 0.0),
)
_TYPES = {path: vtype for path, vtype, _ in VARIABLES}
_FOLDERS = {"ResultManagement.Results"}
EVENT_FIELDS: tuple[tuple[str, ua.VariantType], ...] = (
    ("ResultId", _V.String),
    ("FrameId", _V.UInt64),
    ("Score", _V.Double),
    ("Verdict", _V.String),
    ("IsDefect", _V.Boolean),
    ("DefectClass", _V.String),
    ("Threshold", _V.Double),
)


def node_id(ns: int, path: str = "") -> ua.NodeId:
    """The stable string NodeId of `VisionSystem.<path>`."""
    return ua.NodeId(ua.String(f"{ROOT}.{path}" if path else ROOT), ua.Int16(ns))


@dataclass
class StationNodes:
    """The built address space plus a write cache, so unchanged values notify no subscriber."""

    server: Server
    ns: int
    root: Node
    result_events: EventGenerator
    result_id_prefix: str

    def __post_init__(self) -> None:
        self._written: dict[str, Any] = {}

    async def set(self, path: str, value: Any, source_time: datetime | None = None) -> None:
        if self._written.get(path, _UNSET) == value and source_time is None:
            return
        now = ua.DateTime.now(timezone.utc)
        data = ua.DataValue(
            Value=ua.Variant(value, _TYPES[path]),
            SourceTimestamp=_ua_time(source_time) if source_time else now,
            ServerTimestamp=now,
        )
        await self.server.write_attribute_value(node_id(self.ns, path), data)
        self._written[path] = value

    async def show_status(self, status: RuntimeStatus) -> None:
        await self.set("State", status.state)
        await self.set("VisionStateMachine.CurrentState", ua.LocalizedText(VISION_STATES[status.state]))
        await self.set("Statistics.Frames", status.frames)
        await self.set("Statistics.Defects", status.defects)
        await self.set("Statistics.DroppedFrames", status.dropped_frames)
        await self.set("Statistics.Fps", float(status.fps))
        await self.set(THRESHOLD, float(status.threshold))
        await self.set(ACTIVE_RECIPE, status.recipe or "")
        if status.model is not None:
            await self.set("ConfigurationManagement.CalibratedThreshold", status.model.calibrated_threshold)
            await self.set("ConfigurationManagement.ModelName", status.model.name)
            await self.set("ConfigurationManagement.ModelVersion", status.model.version)
            await self.set("ConfigurationManagement.ModelSha256", status.model.sha256)

    async def show_result(self, part: PartResult) -> None:
        captured = datetime.fromtimestamp(part.captured_at, tz=timezone.utc)
        values = self._result_values(part)
        for name, value in values.items():
            await self.set(f"{LAST_RESULT}.{name}", value, source_time=captured)
        await self.set(f"{LAST_RESULT}.CreationTime", captured, source_time=captured)

    async def emit_result_event(self, part: PartResult) -> None:
        """One `ResultReadyEventType` event per part: subscribers get every part, not just the last."""
        event = self.result_events.event
        for name, value in self._result_values(part).items():
            setattr(event, name, value)
        event.Severity = 500 if part.is_defect else 100
        detail = f" ({part.defect_class})" if part.is_defect else ""
        message = f"frame {part.frame_id}: {part.verdict}{detail}, score {part.score:.4g}"
        await self.result_events.trigger(
            time_attr=datetime.fromtimestamp(part.captured_at, tz=timezone.utc), message=message
        )

    def _result_values(self, part: PartResult) -> dict[str, Any]:
        return {
            "ResultId": f"{self.result_id_prefix}/{part.frame_id}",
            "FrameId": part.frame_id,
            "Score": part.score,
            "Verdict": part.verdict,
            "IsDefect": part.is_defect,
            "DefectClass": part.defect_class,
            "Threshold": part.threshold,
        }


_UNSET = object()


def _ua_time(moment: datetime) -> ua.DateTime:
    return ua.DateTime.fromtimestamp(moment.timestamp(), tz=timezone.utc)


async def build_address_space(
    server: Server, ns: int, display_name: str, line_id: str, station_id: str
) -> StationNodes:
    """Create `Objects/VisionSystem` and everything under it, plus the `ResultReadyEventType`."""
    root = await server.nodes.objects.add_object(node_id(ns), ua.QualifiedName(ROOT, ns))
    await root.write_attribute(
        AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(display_name)))
    )
    await root.add_property(node_id(ns, "LineId"), ua.QualifiedName("LineId", ns), line_id, _V.String)
    await root.add_property(
        node_id(ns, "StationId"), ua.QualifiedName("StationId", ns), station_id, _V.String
    )
    objects: dict[str, Node] = {"": root}
    for path, vtype, initial in VARIABLES:
        parent = await _ensure_objects(objects, ns, path.rpartition(".")[0])
        name = path.rpartition(".")[2]
        await parent.add_variable(node_id(ns, path), ua.QualifiedName(name, ns), initial, vtype)
    threshold = server.get_node(node_id(ns, THRESHOLD))
    await threshold.set_writable()  # who may write is decided by the guard, per session
    for path, description in RECIPE_METHODS.items():
        await _add_recipe_method(objects[CONFIGURATION], ns, path, description)
    event_type = await server.create_custom_event_type(
        ns, "ResultReadyEventType", ObjectIds.BaseEventType, list(EVENT_FIELDS)
    )
    events = await server.get_event_generator(event_type, root.nodeid)
    return StationNodes(server, ns, root, events, f"{line_id}/{station_id}")


async def _add_recipe_method(parent: Node, ns: int, path: str, description: str) -> Node:
    """`<path>(RecipeId: String) -> (Ok: Boolean, Message: String)`; calls are answered by the server's
    guard, never by the node's own callback (which refuses, should the guard be missing)."""
    method = await parent.add_method(
        node_id(ns, path), ua.QualifiedName(path.rpartition(".")[2], ns), _unguarded
    )
    await method.write_attribute(
        AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(description)))
    )
    arguments = (
        ("InputArguments", [_argument("RecipeId", _V.String, "The recipe's name.")]),
        (
            "OutputArguments",
            [
                _argument("Ok", _V.Boolean, "The station did it; false: refused, Message says why."),
                _argument("Message", _V.String, "The station's answer, as its command door words it."),
            ],
        ),
    )
    for name, values in arguments:
        await method.add_property(
            node_id(ns, f"{path}.{name}"),
            ua.QualifiedName(name, 0),  # the standard browse names (namespace 0), as Part 3 has them
            values,
            varianttype=_V.ExtensionObject,
            datatype=ObjectIds.Argument,
        )
    return method


def _argument(name: str, vtype: ua.VariantType, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=ua.NodeId(ua.Int32(vtype.value)),
        ValueRank=-1,  # a scalar
        ArrayDimensions=[],
        Description=ua.LocalizedText(description),
    )


async def _unguarded(parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(StatusCodes.BadUserAccessDenied))


async def _ensure_objects(objects: dict[str, Node], ns: int, path: str) -> Node:
    """The object (or folder) at `path`, creating missing ancestors first."""
    if path in objects:
        return objects[path]
    parent_path, _, name = path.rpartition(".")
    parent = await _ensure_objects(objects, ns, parent_path)
    if path in _FOLDERS:
        node = await parent.add_folder(node_id(ns, path), ua.QualifiedName(name, ns))
    else:
        node = await parent.add_object(node_id(ns, path), ua.QualifiedName(name, ns))
    objects[path] = node
    return node
