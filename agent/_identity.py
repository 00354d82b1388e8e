"""The agent's identity: its own key, the certificate the controller signs for it, the CA.

An agent makes its key itself and sends only a certificate request, so its private key never
leaves the node. The join token's suffix is the CA's fingerprint: the CA the controller answers
with must match it, or the agent refuses to trust (or talk to) whoever answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class IdentityError(Exception):
    """The node's identity is missing, broken or not trustworthy; the message says which."""


def new_key() -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key


def certificate_request(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name or "agent")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def check_ca(ca_pem: bytes, join_token: str) -> None:
    """Refuses a CA whose fingerprint differs from the one the join token carries."""
    _, dot, pinned = join_token.rpartition(".")
    if not dot or not pinned:
        return  # a token without a pin (an older controller): trust on first use
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    actual = hashlib.sha256(der).hexdigest()[: len(pinned)]
    if not hmac.compare_digest(actual, pinned.lower()):
        raise IdentityError(
            "the controller's CA does not match the fingerprint in the join token: either the "
            "token is for another controller, or something between you is not the controller"
        )


@dataclass
class NodeIdentity:
    node_id: str
    name: str
    controller: str
    endpoint: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    @classmethod
    def load(cls, directory: Path) -> NodeIdentity | None:
        try:
            data = json.loads((directory / "node.json").read_text())
        except FileNotFoundError:
            return None
        try:
            return cls(
                data["node_id"],
                data["name"],
                data.get("controller", ""),
                data["endpoint"],
                (directory / "node.key").read_bytes(),
                (directory / "node.crt").read_bytes(),
                (directory / "ca.crt").read_bytes(),
            )
        except (KeyError, FileNotFoundError) as error:
            raise IdentityError(
                f"{directory / 'node.json'} is incomplete ({error}); remove it and join again"
            ) from None

    def save(self, directory: Path) -> None:
        _write_private(directory / "node.key", self.key_pem)
        (directory / "node.crt").write_bytes(self.cert_pem)
        (directory / "ca.crt").write_bytes(self.ca_pem)
        _write_private(
            directory / "node.json",
            json.dumps(
                {
                    "node_id": self.node_id,
                    "name": self.name,
                    "controller": self.controller,
                    "endpoint": self.endpoint,
                }
            ).encode(),
        )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def dial_endpoint(endpoint: str, controller: str) -> str:
    """The agent port to dial: the controller's own answer, with a wildcard host replaced by
    the host this agent reached the controller's API at."""
    host, _, port = endpoint.rpartition(":")
    if host.strip("[]") in {"0.0.0.0", "::", ""}:
        host = controller.rpartition(":")[0]
    return f"{host}:{port}"
