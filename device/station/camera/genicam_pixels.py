"""Turn a GenICam buffer's bytes into the uint8 image capture takes (mono as HxW, colour as BGR).

Kept apart from the Aravis driver so the conversions are tested without a camera or PyGObject.
"""

from __future__ import annotations

import cv2
import numpy as np

from device.station.camera.base import CorruptFrame

# GenICam PFNC names -> (bytes per pixel, OpenCV conversion or None for a plain copy)
_BAYER_TO_BGR = {
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
}
SUPPORTED_PIXEL_FORMATS = ("Mono8", "Mono12", "RGB8", *_BAYER_TO_BGR)
# OpenCV names Bayer patterns by the 2x2 block's second row; PFNC by the first. The table above uses
# PFNC names mapped to the OpenCV code that decodes them (checked against a rendered pattern in tests).


def bytes_per_pixel(pixel_format: str) -> int:
    """How many bytes one pixel of `pixel_format` takes in the buffer (Mono12 is unpacked, 2 bytes)."""
    if pixel_format == "Mono12":
        return 2
    if pixel_format == "RGB8":
        return 3
    if pixel_format in ("Mono8", *_BAYER_TO_BGR):
        return 1
    raise ValueError(
        f"unsupported pixel format {pixel_format!r}; supported: {', '.join(SUPPORTED_PIXEL_FORMATS)}"
    )


def decode_buffer(data: bytes, width: int, height: int, pixel_format: str) -> np.ndarray:
    """One buffer as HxW mono (Mono8, Mono12 scaled to 8 bits) or HxWx3 BGR (RGB8, Bayer demosaiced).
    Mono stays one channel: capture resizes it to the model's size before making it BGR. A buffer of the
    wrong size is a CorruptFrame (counted and dropped, never judged)."""
    expected = width * height * bytes_per_pixel(pixel_format)
    if width <= 0 or height <= 0 or len(data) < expected:
        raise CorruptFrame(
            f"{pixel_format} buffer holds {len(data)} bytes, {width}x{height} needs {expected}"
        )
    if pixel_format == "Mono12":
        raw12 = np.frombuffer(data, dtype="<u2", count=width * height).reshape(height, width)
        mono: np.ndarray = (np.minimum(raw12, 4095) >> 4).astype(np.uint8)  # 12-bit range scaled to 8 bits
        return mono
    if pixel_format == "RGB8":
        rgb = np.frombuffer(data, dtype=np.uint8, count=expected).reshape(height, width, 3)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    raw8: np.ndarray = np.frombuffer(data, dtype=np.uint8, count=expected).reshape(height, width)
    if pixel_format == "Mono8":
        return raw8
    return cv2.cvtColor(raw8, _BAYER_TO_BGR[pixel_format])
