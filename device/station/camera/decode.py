"""Turn encoded image bytes into a BGR array, or say clearly that the frame is broken."""

from __future__ import annotations

import cv2
import numpy as np

from device.station.camera.base import CorruptFrame

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def decode_image(data: bytes, what: str = "frame") -> np.ndarray:
    """Decode JPEG/PNG/BMP bytes to BGR uint8.

    libjpeg happily decodes a truncated JPEG into a half-grey picture, which the model would then flag as
    a defect; so a JPEG must end with its EOI marker before we decode it at all.
    """
    if not data:
        raise CorruptFrame(f"{what}: empty")
    if data.startswith(_JPEG_SOI) and not data.rstrip(b"\r\n\x00").endswith(_JPEG_EOI):
        raise CorruptFrame(f"{what}: truncated JPEG ({len(data)} bytes, no end marker)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CorruptFrame(f"{what}: not a decodable image ({len(data)} bytes)")
    return image
