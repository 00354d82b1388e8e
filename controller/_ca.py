"""The controller as a small certificate authority for its agents.

At first start the controller makes a CA (an EC P-256 key and a self-signed certificate) in its
data dir. An agent that joins sends a certificate request; the controller signs it with the node's
id as the subject's common name, and from then on the agent talks to the agent port over mutual
TLS only. The agent port's own certificate names `waka-controller` (agents ask for that name
whatever address they dial), so moving the controller to another address needs no new
certificates. Join tokens carry the CA's fingerprint, so an agent can tell it reached the right
controller before it trusts anything it was sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from waka.controller._errors import InvalidInput

SERVER_NAME = "waka-controller"
CA_YEARS = 10
NODE_DAYS = 5 * 365


def fingerprint(cert_pem: bytes) -> str:
    """The sha256 of a certificate's DER form, as hex (what join tokens carry)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class ServerCredentials:
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.fingerprint = fingerprint(self.cert_pem)

    @classmethod
    def open(cls, directory: Path) -> CertificateAuthority:
        """Loads the CA from `directory`, making it on first use."""
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "waka CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    def _issue(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
        days: int,
    ) -> bytes:
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def server_credentials(self) -> ServerCredentials:
        """A fresh key and certificate for the agent port (made at every start, never stored)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]),
            key.public_key(),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=[x509.DNSName(SERVER_NAME)],
            days=365,
        )
        return ServerCredentials(_key_pem(key), cert, self.cert_pem)

    def sign_node(self, csr_pem: bytes, node_id: str) -> bytes:
        """Signs an agent's certificate request; the subject is always the node's id."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise InvalidInput("The join request's certificate request is not valid PEM.") from None
        if not csr.is_signature_valid:
            raise InvalidInput("The join request's certificate request has a bad signature.")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise InvalidInput("Agent keys must be EC keys.")
        return self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]),
            public_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            days=NODE_DAYS,
        )
