"""Self-signed certificates with their private keys, as PEM files, for the certificate sign-in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def write_certificate(
    path: Path, *, days_valid: int = 365, expired: bool = False, key_of_another: bool = False
) -> Path:
    """A PEM file holding a private key and a self-signed certificate (CN=bcsync test). `expired`
    ends its validity yesterday; `key_of_another` pairs the certificate with a different key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048) if key_of_another else key
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(days=30), now - timedelta(days=1))
        if expired
        else (now, now + timedelta(days=days_valid))
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bcsync test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(end)
        .sign(signer, hashes.SHA256())
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    return path
