"""The TLS settings (SPEC §14): both listener files or neither, each file read when the
gateway starts, every mistake one line naming the setting (exit status 2 from a command),
TLS 1.2 at least, and upstream verification that cannot be turned off."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.core import tls
from gateway.core.config import ConfigError, Settings
from tests.core.test_config import _run
from tests.tlsfiles import TLSFiles, make_tls_files


@pytest.fixture
def files(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path / "tls")


def listener(cert: Path, key: Path) -> Settings:
    return Settings.from_env({"GATEWAY_TLS_CERT_FILE": str(cert), "GATEWAY_TLS_KEY_FILE": str(key)})


def upstream(url: str, ca_file: Path | None = None) -> Settings:
    env = {"UPSTREAM_URL": url}
    if ca_file is not None:
        env["UPSTREAM_CA_FILE"] = str(ca_file)
    return Settings.from_env(env)


def refused(settings: Settings) -> str:
    with pytest.raises(ConfigError) as caught:
        tls.check(settings)
    return str(caught.value)


def test_no_files_no_tls() -> None:
    settings = Settings.from_env({"UPSTREAM_URL": "http://127.0.0.1:9"})
    assert tls.server_context(settings) is None
    assert tls.upstream_context(settings) is None
    assert tls.scheme(settings) == "http"


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("GATEWAY_TLS_CERT_FILE", "GATEWAY_TLS_KEY_FILE"),
        ("GATEWAY_TLS_KEY_FILE", "GATEWAY_TLS_CERT_FILE"),
    ],
)
def test_both_listener_files_or_neither(given: str, missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({given: "/etc/tollgate/file.pem"})
    assert str(caught.value) == f"{missing}: is required with {given} (both or neither)"


def test_the_listener_context_is_tls_1_2_or_later(files: TLSFiles) -> None:
    settings = listener(files.cert_file, files.key_file)
    context = tls.server_context(settings)
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.scheme(settings) == "https"


def test_a_missing_file_is_named(files: TLSFiles, tmp_path: Path) -> None:
    gone = tmp_path / "gone.pem"
    assert refused(listener(gone, files.key_file)) == (
        f"GATEWAY_TLS_CERT_FILE: cannot read {gone}: No such file or directory"
    )
    assert refused(listener(files.cert_file, gone)).startswith(
        f"GATEWAY_TLS_KEY_FILE: cannot read {gone}"
    )
    assert refused(listener(files.cert_file, tmp_path)).startswith(
        f"GATEWAY_TLS_KEY_FILE: cannot read {tmp_path}: Is a directory"
    )


def test_files_of_the_wrong_kind_are_named(files: TLSFiles, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert refused(listener(junk, files.key_file)) == (
        f"GATEWAY_TLS_CERT_FILE: {junk} holds no PEM certificate"
    )
    assert refused(listener(files.key_file, files.key_file)) == (
        f"GATEWAY_TLS_CERT_FILE: {files.key_file} holds no PEM certificate"
    )
    assert refused(listener(files.cert_file, junk)) == (
        f"GATEWAY_TLS_KEY_FILE: {junk} holds no PEM private key"
    )


def test_a_key_of_another_certificate_is_named(files: TLSFiles, tmp_path: Path) -> None:
    other = make_tls_files(tmp_path / "other")
    assert refused(listener(files.cert_file, other.key_file)) == (
        f"GATEWAY_TLS_KEY_FILE: {other.key_file} is not the key of the certificate in"
        f" {files.cert_file}"
    )


def test_an_encrypted_key_is_refused_without_a_prompt(files: TLSFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(files.key_file.read_bytes(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    assert refused(listener(files.cert_file, encrypted)) == (
        "GATEWAY_TLS_KEY_FILE: is encrypted: give the key without a passphrase"
    )


def test_the_upstream_is_always_verified(files: TLSFiles) -> None:
    for settings in (upstream("https://api.example.com"), upstream("https://x", files.ca_file)):
        context = tls.upstream_context(settings)
        assert context is not None
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # UPSTREAM_CA_FILE replaces the system's CAs (as curl --cacert does): ours only.
    only_ours = tls.upstream_context(upstream("https://x", files.ca_file))
    assert only_ours is not None
    assert len(only_ours.get_ca_certs()) == 1


def test_upstream_ca_file_mistakes_are_named(files: TLSFiles, tmp_path: Path) -> None:
    assert refused(upstream("https://x", tmp_path / "gone.pem")).startswith(
        f"UPSTREAM_CA_FILE: cannot read {tmp_path / 'gone.pem'}"
    )
    assert refused(upstream("https://x", files.key_file)) == (
        f"UPSTREAM_CA_FILE: {files.key_file} holds no PEM certificate"
    )
    assert refused(upstream("http://x", files.ca_file)) == (
        "UPSTREAM_CA_FILE: applies only to an https:// UPSTREAM_URL"
    )


def test_gateway_serve_stops_at_once_on_a_bad_key(files: TLSFiles, tmp_path: Path) -> None:
    other = make_tls_files(tmp_path / "other")
    env = {
        "UPSTREAM_URL": "http://127.0.0.1:9",
        "GATEWAY_TLS_CERT_FILE": str(files.cert_file),
        "GATEWAY_TLS_KEY_FILE": str(other.key_file),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
    }
    result = _run(["gateway", "serve"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gateway: GATEWAY_TLS_KEY_FILE: ")
    assert not (tmp_path / "data").exists()  # stopped before the database was touched
