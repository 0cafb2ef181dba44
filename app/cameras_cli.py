"""`edgeinspect cameras list`: which GenICam (GigE Vision / USB3 Vision) cameras this box can see.

Kept out of app/cli.py so Aravis is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _cmd_cameras_list(args: argparse.Namespace) -> int:
    from device.station.camera.genicam import list_cameras

    cameras = list_cameras()  # SourceConfigError (a ValueError) says what is missing when Aravis is absent
    if args.json:
        print(json.dumps(cameras, indent=2))
        return 0
    if not cameras:
        print("no GenICam camera found")
        return 0
    for cam in cameras:
        print(
            f"genicam:{cam['serial'] or cam['id']}\tid={cam['id']}\t"
            f"address={cam['address']}\tmodel={cam['model']}"
        )
    return 0


def add_camera_commands(sub: Any) -> None:
    """Register `cameras list` on the top-level subparsers."""
    cameras = sub.add_parser("cameras", help="GenICam cameras").add_subparsers(
        dest="cameras_command", required=True
    )
    listing = cameras.add_parser("list", help="discover GigE Vision / USB3 Vision cameras (Aravis)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of one line per camera")
    listing.set_defaults(func=_cmd_cameras_list)
