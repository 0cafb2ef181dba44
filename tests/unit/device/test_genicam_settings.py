"""GenICam transport / trigger / sensor settings: refused values name the setting, without a camera."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from device.config import PUBLIC_FIELDS, CameraSettings
from device.station.camera import genicam
from device.station.camera.base import CameraError, SourceConfigError
from device.station.camera.genicam import GenicamOptions, GenicamSource


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("genicam_packet_size", 100),
        ("genicam_packet_size", 70_000),
        ("genicam_packet_delay", -1),
        ("genicam_trigger_activation", "BothEdges"),
        ("genicam_sensor_roi", {"x": 0, "y": 0, "width": 0, "height": 64}),
        ("genicam_sensor_roi", {"x": -8, "y": 0, "width": 64, "height": 64}),
        ("genicam_sensor_roi", {"x": 0, "y": 0, "width": 64}),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        CameraSettings.model_validate({field: value})
    assert field in str(info.value)
    assert all(error["loc"][0] == field for error in info.value.errors())


def test_defaults_leave_the_camera_alone() -> None:
    settings = CameraSettings()
    assert settings.genicam_packet_size is None and settings.genicam_packet_delay is None
    assert settings.genicam_sensor_roi is None and settings.genicam_trigger_activation == "RisingEdge"
    options = GenicamOptions.from_settings("cam", settings)
    assert options.packet_size is None and options.packet_delay is None and options.sensor_roi is None


def test_settings_become_options() -> None:
    settings = CameraSettings.model_validate(
        {
            "fps": 25,
            "timeout_s": 2,
            "genicam_trigger": "hardware",
            "genicam_trigger_activation": "FallingEdge",
            "genicam_packet_size": 9000,
            "genicam_packet_delay": 500,
            "genicam_sensor_roi": {"x": 8, "y": 4, "width": 640, "height": 480},
        }
    )
    options = GenicamOptions.from_settings("192.168.1.20", settings)
    assert options.device == "192.168.1.20" and options.trigger == "hardware"
    assert options.trigger_activation == "FallingEdge"
    assert (options.packet_size, options.packet_delay) == (9000, 500)
    assert options.sensor_roi == (8, 4, 640, 480)
    assert (options.frame_rate, options.timeout_s) == (25, 2)


def test_new_fields_are_public() -> None:
    for name in (
        "genicam_trigger_activation",
        "genicam_packet_size",
        "genicam_packet_delay",
        "genicam_sensor_roi",
    ):
        assert name in PUBLIC_FIELDS["camera"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (GenicamOptions(trigger_activation="Both"), "genicam_trigger_activation"),
        (GenicamOptions(sensor_roi=(0, 0, 0, 10)), "genicam_sensor_roi"),
        (GenicamOptions(packet_size=-1), "genicam_packet_size"),
        (GenicamOptions(packet_delay=-5), "genicam_packet_delay"),
    ],
)
def test_options_from_code_are_checked_too(options: GenicamOptions, field: str) -> None:
    with pytest.raises(SourceConfigError, match=f"camera.{field}"):
        GenicamSource(options)


class StubCamera:
    """Just enough of Aravis.Camera for the setting helpers: features by name, bounds, a region."""

    def __init__(self, features: dict[str, int | str], gige: bool = True) -> None:
        self.features = dict(features)
        self.gige = gige
        self.region = (0, 0, 2048, 2048)

    def is_feature_available(self, name: str) -> bool:
        return name in self.features

    def is_gv_device(self) -> bool:
        return self.gige

    def get_integer_bounds(self, name: str) -> tuple[int, int]:
        return (0, 1000)

    def get_integer_increment(self, name: str) -> int:
        return 1

    def set_integer(self, name: str, value: int) -> None:
        self.features[name] = value

    def get_integer(self, name: str) -> int:
        return int(self.features[name])

    def dup_available_enumerations_as_strings(self, name: str) -> list[str]:
        return ["RisingEdge"]

    def set_string(self, name: str, value: str) -> None:
        self.features[name] = value

    def get_string(self, name: str) -> str:
        return str(self.features[name])

    def get_sensor_size(self) -> tuple[int, int]:
        return (2048, 1536)

    def is_region_offset_available(self) -> bool:
        return "OffsetX" in self.features

    def get_width_bounds(self) -> tuple[int, int]:
        return (16, 2048)

    def get_height_bounds(self) -> tuple[int, int]:
        return (16, 1536)

    def get_width_increment(self) -> int:
        return 16

    def get_height_increment(self) -> int:
        return 2

    def get_x_offset_increment(self) -> int:
        return 4

    def get_y_offset_increment(self) -> int:
        return 2

    def set_region(self, x: int, y: int, width: int, height: int) -> None:
        self.region = (x, y, width, height)

    def get_region(self) -> tuple[int, int, int, int]:
        return self.region


def test_a_missing_feature_is_an_error_naming_the_setting() -> None:
    camera = StubCamera({})
    with pytest.raises(CameraError, match=r"camera\.genicam_packet_delay: this camera has no GevSCPD"):
        genicam._set_integer_feature(camera, "GevSCPD", 10, "genicam_packet_delay")
    with pytest.raises(CameraError, match=r"camera\.genicam_trigger_activation: .*no TriggerActivation"):
        genicam._set_trigger_activation(camera, "FallingEdge")
    with pytest.raises(CameraError, match=r"camera\.genicam_packet_size: only GigE Vision"):
        genicam._require_gige(StubCamera({}, gige=False), "genicam_packet_size")


def test_values_outside_the_camera_are_refused_naming_the_setting() -> None:
    camera = StubCamera({"GevSCPD": 0})
    with pytest.raises(CameraError, match=r"camera\.genicam_packet_delay: 5000 is outside .*0\.\.1000"):
        genicam._set_integer_feature(camera, "GevSCPD", 5000, "genicam_packet_delay")
    assert camera.features["GevSCPD"] == 0  # nothing written
    genicam._set_integer_feature(camera, "GevSCPD", 250, "genicam_packet_delay")
    assert camera.features["GevSCPD"] == 250
    with pytest.raises(CameraError, match=r"camera\.genicam_trigger_activation: 'FallingEdge' not offered"):
        genicam._set_trigger_activation(StubCamera({"TriggerActivation": "RisingEdge"}), "FallingEdge")


@pytest.mark.parametrize(
    ("roi", "reason"),
    [
        ((0, 0, 2048, 2048), "does not fit the 2048x1536 sensor"),
        ((2000, 0, 64, 64), "does not fit"),
        ((8, 0, 64, 64), "no OffsetX/OffsetY"),
        ((0, 0, 100, 64), "width 100 is not 16 \\+ a multiple of 16"),
        ((0, 0, 8, 64), "width 8 is outside"),
    ],
)
def test_sensor_roi_the_camera_cannot_read_out_is_refused(
    roi: tuple[int, int, int, int], reason: str
) -> None:
    camera = StubCamera({})
    with pytest.raises(CameraError, match=f"camera\\.genicam_sensor_roi: .*{reason}"):
        genicam._set_sensor_roi(camera, roi)
    assert camera.region == (0, 0, 2048, 2048)  # refused before anything was written


def test_sensor_roi_the_camera_rounds_is_refused() -> None:
    camera = StubCamera({"OffsetX": 0})
    camera.set_region = lambda x, y, w, h: setattr(camera, "region", (x, y, w, h - 2))  # type: ignore[method-assign]
    with pytest.raises(CameraError, match=r"camera\.genicam_sensor_roi: the camera made \(4, 2, 640, 478\)"):
        genicam._set_sensor_roi(camera, (4, 2, 640, 480))
