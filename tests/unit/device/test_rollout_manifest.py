"""Release manifests: canonical bytes, Ed25519 signing, and every way a changed document is caught."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.cli import main
from device.station.rollout.state import RolloutState
from device.wire.release import (
    ManifestError,
    PromoteNotice,
    ReleaseManifest,
    RolloutPolicy,
    generate_keypair,
    load_private_key,
    load_public_key,
    parse_document,
    sign,
    verify,
)

SHA = "ab" * 32


def _manifest(**changes: object) -> ReleaseManifest:
    fields: dict[str, object] = {
        "release_id": "pcb-2-001",
        "model_name": "pcb",
        "model_version": "2",
        "sha256": SHA,
        "size": 1234,
        "url": "https://plant.example/releases/pcb-2-001.onnx",
        "created_at": "2025-01-02T03:04:05.000Z",
        "policy": RolloutPolicy(canary=["st1"], stations=["st2", "st3"]),
    }
    fields.update(changes)
    return ReleaseManifest.model_validate(fields)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_canonical_bytes_do_not_depend_on_key_order_whitespace_or_signature(key: Ed25519PrivateKey) -> None:
    manifest = _manifest()
    body = json.loads(manifest.to_json())
    shuffled = json.dumps(dict(reversed(list(body.items()))), indent=4).encode()
    again = parse_document(shuffled, ReleaseManifest)
    assert again.canonical_bytes() == manifest.canonical_bytes()
    assert sign(manifest, key).canonical_bytes() == manifest.canonical_bytes()
    assert b" " not in manifest.canonical_bytes()  # no whitespace; the URL has none either
    assert json.loads(manifest.canonical_bytes()) == {k: v for k, v in body.items() if k != "signature"}


def test_a_signed_manifest_survives_the_wire_and_verifies(key: Ed25519PrivateKey) -> None:
    signed = sign(_manifest(), key)
    received = parse_document(signed.to_json(), ReleaseManifest)
    verify(received, [Ed25519PrivateKey.generate().public_key(), key.public_key()])  # any trusted key


@pytest.mark.parametrize(
    "change",
    [
        {"url": "https://evil.example/pcb.onnx"},
        {"sha256": "cd" * 32},
        {"size": 1235},
        {"model_version": "1"},
        {"created_at": "2026-01-02T03:04:05.000Z"},
        {"policy": {"canary": [], "stations": None}},
    ],
)
def test_any_change_after_signing_breaks_the_signature(key: Ed25519PrivateKey, change: dict) -> None:
    signed = sign(_manifest(), key)
    body = json.loads(signed.to_json())
    body.update(change)
    tampered = parse_document(json.dumps(body).encode(), ReleaseManifest)
    with pytest.raises(ManifestError, match="bad signature"):
        verify(tampered, [key.public_key()])


def test_unsigned_wrong_key_and_garbage_signatures_are_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ManifestError, match="unsigned"):
        verify(_manifest(), [key.public_key()])
    other = sign(_manifest(), Ed25519PrivateKey.generate())
    with pytest.raises(ManifestError, match="bad signature"):
        verify(other, [key.public_key()])
    with pytest.raises(ManifestError, match="not base64"):
        verify(_manifest(signature="%%%not-base64%%%"), [key.public_key()])
    promote = sign(PromoteNotice(release_id="pcb-2-001"), key)
    body = json.loads(promote.to_json())
    body["release_id"] = "pcb-3-001"  # a promote re-targeted at another release
    with pytest.raises(ManifestError, match="bad signature"):
        verify(parse_document(json.dumps(body).encode(), PromoteNotice), [key.public_key()])


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"not json", "malformed ReleaseManifest"),
        (json.dumps({"release_id": "x"}).encode(), "sha256"),
        (json.dumps({**json.loads(_manifest().to_json()), "url": "file:///etc/passwd"}).encode(), "url"),
        (
            json.dumps({**json.loads(_manifest().to_json()), "created_at": "2025-01-02T03:04:05"}).encode(),
            "zone",
        ),
        (json.dumps({**json.loads(_manifest().to_json()), "extra": 1}).encode(), "extra"),
    ],
)
def test_malformed_documents_name_the_problem(payload: bytes, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        parse_document(payload, ReleaseManifest)


def test_policy_targets_and_canary_quorum() -> None:
    policy = RolloutPolicy(canary=["st1", "st2"], stations=["st3"], min_canary_ok=1)
    assert policy.targets("st1") and policy.targets("st3") and not policy.targets("st9")
    assert policy.is_canary("st2") and not policy.is_canary("st3")
    assert policy.canaries_needed() == 1
    assert RolloutPolicy(canary=["a", "b"]).canaries_needed() == 2
    assert RolloutPolicy().targets("anyone")


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path, capsys) -> None:
    assert main(["release", "keygen", "--out", str(tmp_path / "keys")]) == 0
    private, public = tmp_path / "keys" / "release-signing.key", tmp_path / "keys" / "release-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signed = sign(_manifest(), load_private_key(private))
    verify(signed, [load_public_key(public)])
    assert "PRIVATE" not in public.read_text()
    assert main(["release", "keygen", "--out", str(tmp_path / "keys")]) == 2  # never overwritten
    assert "refusing to overwrite" in capsys.readouterr().err
    with pytest.raises(ValueError):
        generate_keypair(tmp_path / "keys")


def test_keys_of_the_wrong_kind_are_refused_with_the_file_named(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "rsa.pub"
    path.write_bytes(pem)
    with pytest.raises(ValueError, match=r"rsa\.pub.*not an Ed25519"):
        load_public_key(path)
    with pytest.raises(ValueError, match=r"missing\.pub"):
        load_public_key(tmp_path / "missing.pub")
    (tmp_path / "junk.key").write_text("junk")
    with pytest.raises(ValueError, match=r"junk\.key"):
        load_private_key(tmp_path / "junk.key")


def test_state_knows_older_releases_and_survives_a_restart(tmp_path: Path) -> None:
    state = RolloutState(newest_created_at="2025-01-02T03:04:05.000Z")
    assert state.is_older_than_newest("2025-01-02T03:04:04+00:00")
    assert not state.is_older_than_newest("2025-01-02T03:04:05.000Z")
    state.save(tmp_path / "state.json")
    assert RolloutState.load(tmp_path / "state.json").newest_created_at == state.newest_created_at
