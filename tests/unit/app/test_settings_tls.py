"""HTTPS settings: a bad certificate or key stops start-up with a message naming the field."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from unit.app.tls_certs import TlsFiles, write_key, write_server_pki

from app.serve import api_server_config, is_loopback, panel_url, warn_if_clear_text
from app.settings import ApiSettings, ConfigError, Settings, load_settings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_server_pki(tmp_path_factory.mktemp("pki"))


def load_api(tmp_path: Path, **api: Any) -> Settings:
    return load_settings(overrides={"data_dir": str(tmp_path), "api": api})


def config_error(tmp_path: Path, **api: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_api(tmp_path, **api)
    return str(caught.value)


def test_tls_off_by_default(tmp_path: Path) -> None:
    api = load_api(tmp_path).api
    assert api.tls_cert_file is None and api.tls_key_file is None and not api.tls_enabled


def test_a_matching_pair_turns_tls_on(tmp_path: Path, pki: TlsFiles) -> None:
    api = load_api(tmp_path, tls_cert_file=str(pki.cert), tls_key_file=str(pki.key)).api
    assert api.tls_enabled
    assert (api.tls_cert_file, api.tls_key_file) == (str(pki.cert), str(pki.key))


def test_relative_paths_resolve_from_the_working_directory(
    tmp_path: Path, pki: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pki.cert.parent)
    api = load_api(tmp_path, tls_cert_file=pki.cert.name, tls_key_file=pki.key.name).api
    assert api.tls_cert_file == str(pki.cert.resolve())
    assert api.tls_key_file == str(pki.key.resolve())


def test_environment_variables_set_the_pair(
    tmp_path: Path, pki: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEINSPECT_API__TLS_CERT_FILE", str(pki.cert))
    monkeypatch.setenv("EDGEINSPECT_API__TLS_KEY_FILE", str(pki.key))
    assert load_api(tmp_path).api.tls_enabled


@pytest.mark.parametrize(
    ("given", "missing"), [("tls_cert_file", "tls_key_file"), ("tls_key_file", "tls_cert_file")]
)
def test_one_of_the_pair_alone_is_refused(tmp_path: Path, pki: TlsFiles, given: str, missing: str) -> None:
    path = pki.cert if given == "tls_cert_file" else pki.key
    message = config_error(tmp_path, **{given: str(path)})
    assert message.startswith("invalid configuration:")
    assert f"{missing} is required when {given} is set" in message


@pytest.mark.parametrize("field", ["tls_cert_file", "tls_key_file"])
def test_a_missing_file_names_the_field(tmp_path: Path, pki: TlsFiles, field: str) -> None:
    pair = {"tls_cert_file": str(pki.cert), "tls_key_file": str(pki.key)}
    pair[field] = str(tmp_path / "nowhere.pem")
    message = config_error(tmp_path, **pair)
    assert f"api.{field}: Value error, cannot read {tmp_path / 'nowhere.pem'}: No such file" in message


def test_a_directory_or_an_empty_path_is_refused(tmp_path: Path, pki: TlsFiles) -> None:
    assert "api.tls_cert_file: Value error, cannot read" in config_error(
        tmp_path, tls_cert_file=str(tmp_path), tls_key_file=str(pki.key)
    )
    assert "api.tls_key_file: Value error, must be a file path or unset" in config_error(
        tmp_path, tls_cert_file=str(pki.cert), tls_key_file=" "
    )


def test_a_file_that_is_not_pem_names_the_field(tmp_path: Path, pki: TlsFiles) -> None:
    der = tmp_path / "server.der"
    der.write_bytes(b"\x30\x82\x01\x0a not a PEM file")
    message = config_error(tmp_path, tls_cert_file=str(pki.cert), tls_key_file=str(der))
    assert f"api.tls_key_file: Value error, {der} is not a PEM file" in message


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pki: TlsFiles) -> None:
    other_key = tmp_path / "other.key"
    write_key(other_key)
    message = config_error(tmp_path, tls_cert_file=str(pki.cert), tls_key_file=str(other_key))
    assert (
        f"api.tls_key_file: Value error, {other_key} does not match the certificate in {pki.cert}" in message
    )


def test_swapped_files_name_the_certificate_field(tmp_path: Path, pki: TlsFiles) -> None:
    message = config_error(tmp_path, tls_cert_file=str(pki.key), tls_key_file=str(pki.cert))
    assert f"api.tls_cert_file: Value error, {pki.key} holds no valid PEM certificate" in message


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(tmp_path: Path, pki: TlsFiles) -> None:
    encrypted = tmp_path / "encrypted.key"
    write_key(encrypted, password=b"secret-passphrase")
    message = config_error(tmp_path, tls_cert_file=str(pki.cert), tls_key_file=str(encrypted))
    assert f"api.tls_key_file: Value error, {encrypted} is encrypted" in message


def test_cli_prints_the_tls_error_as_invalid_configuration(
    tmp_path: Path, pki: TlsFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path}\napi:\n  tls_cert_file: {pki.cert}\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeinspect: invalid configuration:")
    assert "tls_key_file is required when tls_cert_file is set" in err


def test_server_config_speaks_tls_with_the_pair(tmp_path: Path, pki: TlsFiles) -> None:
    api = ApiSettings(tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
    config = api_server_config(Starlette(), api)
    assert isinstance(config.ssl, ssl.SSLContext)
    assert api_server_config(Starlette(), ApiSettings()).ssl is None


def test_server_config_fails_clearly_when_a_file_vanished_after_loading(tmp_path: Path) -> None:
    pki = write_server_pki(tmp_path / "pki")
    api = ApiSettings(tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
    pki.key.unlink()
    with pytest.raises(ConfigError, match=r"api\.tls_cert_file/api\.tls_key_file: .*No such file"):
        api_server_config(Starlette(), api)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("edge-box.plant", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_clear_text_on_the_network_is_warned_about(pki: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeinspect"):
        assert warn_if_clear_text(ApiSettings(host="0.0.0.0")) is True
        assert warn_if_clear_text(ApiSettings(host="127.0.0.1")) is False
        tls = ApiSettings(host="0.0.0.0", tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
        assert warn_if_clear_text(tls) is False
    assert len(caplog.records) == 1
    assert "keys and panel logins travel in clear text" in caplog.records[0].getMessage()


def test_panel_url_shows_the_scheme(pki: TlsFiles) -> None:
    assert panel_url(ApiSettings(port=8000)) == "http://127.0.0.1:8000/"
    tls = ApiSettings(host="::", port=8443, tls_cert_file=str(pki.cert), tls_key_file=str(pki.key))
    assert panel_url(tls) == "https://[::]:8443/"
