"""`edgeinspect release keygen | publish | serve`: the plant-side commands of the fleet model rollout
(docs/FLEET_ROLLOUT.md). Kept apart from `app.cli` so that file stays a list of commands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _station_list(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _cmd_keygen(args: argparse.Namespace) -> int:
    from device.wire.release import generate_keypair

    private, public = generate_keypair(args.out)
    print(f"signing key (keep it on the plant side, mode 0600): {private}")
    print(f"public key (copy to each station, list it in rollout.trusted_public_keys): {public}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from device.plant.file_server import FileServer

    with FileServer(args.dir, args.host, args.port, args.tls_cert, args.tls_key) as server:
        print(f"serving {args.dir} at {server.base_url}/ (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from app.settings import load_settings
    from device.plant.file_server import FileServer
    from device.plant.release_publisher import RolloutCoordinator, build_release
    from device.wire.release import RolloutPolicy, load_private_key
    from vision.inspector import ModelFileError

    overrides: dict[str, Any] = {"mqtt": {"start_local_broker": False}}
    if args.mqtt_url:
        overrides["mqtt"]["url"] = args.mqtt_url
    if args.prefix:
        overrides["mqtt"]["topic_prefix"] = args.prefix
    settings = load_settings(args.config, overrides)
    policy = RolloutPolicy(
        canary=_station_list(args.canary),
        stations=_station_list(args.stations) or None,
        min_canary_ok=args.min_canary_ok,
    )
    key = load_private_key(args.key)
    serve_dir = Path(args.serve_dir) if args.serve_dir else None
    server = None
    if args.serve:
        if serve_dir is None:
            raise ValueError("--serve needs --serve-dir (the folder to serve)")
        host, _, port = args.serve.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"--serve must look like HOST:PORT, got {args.serve!r}")
        serve_dir.mkdir(parents=True, exist_ok=True)
        server = FileServer(serve_dir, host or "0.0.0.0", int(port), args.tls_cert, args.tls_key)
    try:
        try:
            manifest = build_release(Path(args.model), args.base_url, policy, key, args.release_id, serve_dir)
        except ModelFileError as exc:
            raise ValueError(f"not releasing {args.model}: {exc}") from exc
        print(
            f"release {manifest.release_id}: sha256 {manifest.sha256}, {manifest.size} bytes, {manifest.url}"
        )
        try:
            result = RolloutCoordinator(settings.mqtt, manifest, key).run(args.timeout, args.settle)
        except TimeoutError as exc:
            raise ValueError(str(exc)) from exc
    finally:
        if server is not None:
            server.close()
    done = sum(1 for r in result.reports.values() if r.ok)
    print(
        f"{'OK' if result.ok else 'NOT OK'}: {done} station(s) on the release; {len(result.reports)} reported"
    )
    return 0 if result.ok else 1


def add_release_commands(sub: Any) -> None:
    """Attach `release ...` to the main parser's subcommands."""
    release = sub.add_parser("release", help="fleet model rollout: signing keys, publishing, serving files")
    commands = release.add_subparsers(dest="release_command", required=True)

    keygen = commands.add_parser("keygen", help="make an Ed25519 signing key pair")
    keygen.add_argument("--out", required=True, help="folder for release-signing.key / .pub")
    keygen.set_defaults(func=_cmd_keygen)

    serve = commands.add_parser("serve", help="serve release files over HTTP(S)")
    serve.add_argument("--dir", required=True)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8088)
    serve.add_argument("--tls-cert", default=None)
    serve.add_argument("--tls-key", default=None)
    serve.set_defaults(func=_cmd_serve)

    pub = commands.add_parser("publish", help="sign a model, publish the release, follow the rollout")
    pub.add_argument("--model", required=True, help="the ONNX model to release")
    pub.add_argument("--key", required=True, help="private signing key (release-signing.key)")
    pub.add_argument("--base-url", required=True, help="URL the stations fetch the file under")
    pub.add_argument("--canary", default="", help="comma-separated canary station ids (install first)")
    pub.add_argument("--stations", default="", help="comma-separated other station ids (default: all)")
    pub.add_argument("--min-canary-ok", type=int, default=None, help="canaries that must succeed (all)")
    pub.add_argument("--release-id", default=None, help="default <model>-<version>-<UTC time>")
    pub.add_argument("--serve-dir", default=None, help="copy the model here (the folder --base-url serves)")
    pub.add_argument("--serve", default=None, metavar="HOST:PORT", help="serve --serve-dir while publishing")
    pub.add_argument("--tls-cert", default=None, help="with --serve: HTTPS certificate")
    pub.add_argument("--tls-key", default=None, help="with --serve: HTTPS key")
    pub.add_argument("--config", default=None, help="settings file whose mqtt section is used")
    pub.add_argument("--mqtt-url", default=None)
    pub.add_argument("--prefix", default=None, help="MQTT topic prefix (default edgeinspect)")
    pub.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    pub.add_argument("--settle", type=float, default=30.0, help="without --stations: quiet time to finish")
    pub.set_defaults(func=_cmd_publish)
