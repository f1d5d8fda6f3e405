"""A test CA and certificates it signs, written as PEM files (``trustme``), and the
contexts a test server and a test client need."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TLSFiles:
    ca: trustme.CA
    ca_file: Path  # the CA certificate: what a client trusts
    cert_file: Path  # a certificate for localhost and 127.0.0.1, with its chain
    key_file: Path  # its private key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls_files(directory: Path, *names: str) -> TLSFiles:
    """A new CA, and a certificate for ``names`` (default: localhost and 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert(*(names or ("localhost", "127.0.0.1")))
    files = TLSFiles(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    issued.private_key_pem.write_to_path(str(files.key_file))
    with files.cert_file.open("wb") as out:
        for pem in issued.cert_chain_pems:
            out.write(pem.bytes())
    return files
