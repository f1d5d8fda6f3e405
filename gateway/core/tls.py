"""TLS contexts from the settings: the proxy listener's and the upstream client's.

The listener (``GATEWAY_TLS_CERT_FILE`` and ``GATEWAY_TLS_KEY_FILE``) speaks TLS 1.2 or
1.3 with Python's default server ciphers (forward secrecy, AEAD) and offers only
HTTP/1.1 by ALPN. The upstream client (an ``https`` ``UPSTREAM_URL``) always verifies
the certificate and the host name, against ``UPSTREAM_CA_FILE`` when set (that bundle
only, as ``curl --cacert`` does) or else the system's CAs; there is no way to turn
verification off.

Every file is read once, when the gateway starts; a file that cannot be read, is not
PEM, or a key that does not match its certificate is a :class:`ConfigError` naming the
setting, so ``gateway serve`` and ``gateway up`` stop with one line and exit status 2.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NoReturn

from .config import ConfigError, Settings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
ALPN = ["http/1.1"]  # the only protocol the listener speaks


def check(settings: Settings) -> None:
    """Raise ConfigError now if either context cannot be built (``gateway serve`` checks
    before it starts workers, which build their own: a context cannot be sent to them)."""
    server_context(settings)
    upstream_context(settings)


def scheme(settings: Settings) -> str:
    """The scheme clients reach the proxy listener with."""
    return "http" if settings.tls_cert_file is None else "https"


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's context, or None when it speaks plain HTTP."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:  # both or neither: Settings checked it
        return None
    _readable("GATEWAY_TLS_CERT_FILE", cert)
    _readable("GATEWAY_TLS_KEY_FILE", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_alpn_protocols(ALPN)
    _certificates("GATEWAY_TLS_CERT_FILE", cert)
    try:
        # A password callback, or OpenSSL would prompt on the terminal for an encrypted key.
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            problem = f"{key} is not the key of the certificate in {cert}"
        else:
            problem = f"{key} holds no PEM private key"
        raise ConfigError("GATEWAY_TLS_KEY_FILE", problem) from None
    return context


def upstream_context(settings: Settings) -> ssl.SSLContext | None:
    """The upstream client's context: None for an ``http`` upstream."""
    upstream = settings.require_upstream()
    ca_file = settings.upstream_ca_file
    if not upstream.startswith("https://"):
        if ca_file is not None:
            raise ConfigError("UPSTREAM_CA_FILE", "applies only to an https:// UPSTREAM_URL")
        return None
    if ca_file is None:
        context = ssl.create_default_context()
    else:
        _readable("UPSTREAM_CA_FILE", ca_file)
        _certificates("UPSTREAM_CA_FILE", ca_file)
        context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = MINIMUM_VERSION
    return context


def _certificates(variable: str, path: Path) -> None:
    """Fail unless ``path`` holds PEM certificates (load_cert_chain alone cannot say which
    of its two files is wrong)."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except ssl.SSLError:
        raise ConfigError(variable, f"{path} holds no PEM certificate") from None


def _readable(variable: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise ConfigError(variable, f"cannot read {path}: {err.strerror or err}") from None


def _no_password() -> NoReturn:
    raise ConfigError("GATEWAY_TLS_KEY_FILE", "is encrypted: give the key without a passphrase")
