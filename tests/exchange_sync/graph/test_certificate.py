"""M365_CLIENT_CERTIFICATE: the PEM file is read with `cryptography` before MSAL sees it, so a
missing key, a certificate of another key or an expired certificate is named with what to do; a
good one reaches MSAL as private key + certificate, so MSAL signs with SHA-256 (x5t#S256)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchange_sync.graph import AuthenticationFailed, certificate_credential
from exchange_sync.services import contact_sync
from tests.certificates import write_certificate


def test_a_good_certificate_is_passed_to_msal_as_key_and_certificate(tmp_path):
    path = write_certificate(tmp_path / "bcsync.pem")

    credential = certificate_credential(path=str(path))

    given = credential.for_msal()
    assert set(given) == {"private_key", "public_certificate"}  # no SHA-1 "thumbprint"
    assert given["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    certificate = x509.load_pem_x509_certificate(given["public_certificate"].encode())
    expected = base64.urlsafe_b64encode(hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest())
    assert credential.sha256_thumbprint == expected.decode().rstrip("=")
    assert "PRIVATE" not in repr(credential)


def test_an_expired_certificate_is_named_with_its_date(tmp_path):
    path = write_certificate(tmp_path / "old.pem", expired=True)
    with pytest.raises(
        AuthenticationFailed, match=r"CN=bcsync test, expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC"
    ) as raised:
        certificate_credential(path=str(path))
    assert raised.value.code == "certificate_expired"


def test_a_certificate_of_another_key_is_named(tmp_path):
    path = write_certificate(tmp_path / "mixed.pem", key_of_another=True)
    with pytest.raises(AuthenticationFailed, match="no certificate for its private key"):
        certificate_credential(path=str(path))


def test_a_file_without_a_key_or_missing_is_named(tmp_path):
    only_certificate = tmp_path / "cert-only.pem"
    full = write_certificate(tmp_path / "full.pem").read_bytes()
    only_certificate.write_bytes(full[full.index(b"-----BEGIN CERTIFICATE") :])
    with pytest.raises(AuthenticationFailed, match="holds no readable private key"):
        certificate_credential(path=str(only_certificate))
    with pytest.raises(AuthenticationFailed, match="Cannot read the certificate file"):
        certificate_credential(path=str(tmp_path / "nowhere.pem"))


def test_validate_exchange_connection_names_an_expired_certificate(settings, sync_user, tmp_path):
    settings.M365_CLIENT_SECRET = ""
    settings.M365_CLIENT_CERTIFICATE = str(write_certificate(tmp_path / "old.pem", expired=True))

    check = contact_sync.validate_exchange_connection(user=sync_user)

    assert not check.ok
    assert check.message.startswith(
        "Cannot connect to Microsoft 365 (sign-in to Microsoft 365): The certificate in "
        f"M365_CLIENT_CERTIFICATE ({settings.M365_CLIENT_CERTIFICATE}), CN=bcsync test, expired on "
    )
