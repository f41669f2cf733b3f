"""Certificate credentials: client assertions signed by MSAL, checked against --client-certificate."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jwt
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from m365_emulator import RunningEmulator, serve_in_thread
from m365_emulator.control import EmulatorControl, sign_in
from m365_emulator.jose import certificates_in_pem
from tests.m365_emulator.transport import emulator_session

from .conftest import ADA, CLIENT_ID, GRAPH, TENANT, make_config

LOGIN = "https://login.microsoftonline.com"
ROOT = Path(__file__).resolve().parents[2]
APP_SCOPE = ["https://graph.microsoft.com/.default"]


def certificate(days: float = 30, starts_days_ago: float = 1) -> tuple[str, str]:
    """(private key PEM, certificate PEM) of a fresh self-signed RSA certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bcsync")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=starts_days_ago)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def good() -> tuple[str, str]:
    return certificate()


@pytest.fixture
def emulator(good) -> Iterator[RunningEmulator]:
    server = serve_in_thread(
        make_config(client_certificates=[good[1]], grant="both", redirect_uris=["http://localhost/cb"])
    )
    yield server
    server.stop()


def app_with(emulator: RunningEmulator, credential: dict) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=credential,
        authority=f"{LOGIN}/{TENANT}",
        http_client=emulator_session(emulator.url),
    )


def test_pem_certificate_is_read_like_cryptography_reads_it(good):
    (parsed,) = certificates_in_pem(good[0] + good[1])  # the private key next to it is ignored
    cert = x509.load_pem_x509_certificate(good[1].encode())
    assert parsed.public_key.n == cert.public_key().public_numbers().n
    assert parsed.sha256_thumbprint == cert.fingerprint(hashes.SHA256())
    assert parsed.not_after == cert.not_valid_after_utc.timestamp()


def test_msal_sha256_certificate_credential_gets_a_token(emulator, good):
    private_key, public_certificate = good
    app = app_with(emulator, {"private_key": private_key, "public_certificate": public_certificate})
    result = app.acquire_token_for_client(APP_SCOPE)
    assert "access_token" in result, result
    response = emulator_session(emulator.url).get(
        f"{GRAPH}/users/{ADA}/contactFolders", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert response.status_code == 200


def test_msal_legacy_sha1_thumbprint_credential_gets_a_token(emulator, good):
    private_key, public_certificate = good
    thumbprint = x509.load_pem_x509_certificate(public_certificate.encode()).fingerprint(hashes.SHA1()).hex()  # noqa: S303
    result = app_with(
        emulator, {"private_key": private_key, "thumbprint": thumbprint}
    ).acquire_token_for_client(APP_SCOPE)
    assert "access_token" in result, result


def test_certificate_signs_the_auth_code_redemption_too(emulator, good):
    private_key, public_certificate = good
    app = app_with(emulator, {"private_key": private_key, "public_certificate": public_certificate})
    started = app.initiate_auth_code_flow(
        ["Contacts.ReadWrite"], redirect_uri="http://localhost:8000/cb", response_mode="form_post"
    )
    back = sign_in(started["auth_uri"], ADA)
    result = app.acquire_token_by_auth_code_flow(started, dict(parse_qsl(urlsplit(back).query)))
    assert result["id_token_claims"]["preferred_username"] == ADA


def test_unregistered_certificate_is_700027_key_not_found(emulator):
    private_key, public_certificate = certificate()
    result = app_with(
        emulator, {"private_key": private_key, "public_certificate": public_certificate}
    ).acquire_token_for_client(APP_SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]
    assert "The key was not found" in result["error_description"]


def test_signature_by_another_key_is_700027_signature_mismatch(emulator, good):
    other_key, _ = certificate()
    result = app_with(
        emulator, {"private_key": other_key, "public_certificate": good[1]}
    ).acquire_token_for_client(APP_SCOPE)
    assert result["error_codes"] == [700027]
    assert "did not match the expected signature value" in result["error_description"]


def test_expired_certificate_is_named(emulator):
    private_key, public_certificate = certificate(days=2, starts_days_ago=10)
    EmulatorControl(emulator.url).add_certificate(public_certificate)
    result = app_with(
        emulator, {"private_key": private_key, "public_certificate": public_certificate}
    ).acquire_token_for_client(APP_SCOPE)
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]
    assert "is expired on application" in result["error_description"]


def hand_made_assertion(private_key: str, public_certificate: str, **claims) -> dict[str, str]:
    cert = x509.load_pem_x509_certificate(public_certificate.encode())
    thumbprint = jwt.utils.base64url_encode(cert.fingerprint(hashes.SHA256())).decode()
    now = time.time()
    payload = {
        "aud": f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": "one",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    assertion = jwt.encode(payload, private_key, algorithm="PS256", headers={"x5t#S256": thumbprint})
    return {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "scope": APP_SCOPE[0],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "https://elsewhere.test/token"}, 700023),
        ({"exp": time.time() - 60}, 700024),
        ({"iss": "someone-else"}, 50027),
        ({"jti": ""}, 50027),
    ],
)
def test_assertion_claims_are_checked(emulator, good, claims, code):
    session = emulator_session(emulator.url)
    form = hand_made_assertion(*good, **claims)
    response = session.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", data=form)
    assert (response.status_code, response.json()["error"], response.json()["error_codes"]) == (
        401,
        "invalid_client",
        [code],
    )


def test_a_reused_assertion_is_accepted_as_msal_reuses_it(emulator, good):
    session = emulator_session(emulator.url)
    form = hand_made_assertion(*good)
    for _ in range(2):
        assert session.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", data=form).status_code == 200


def test_cli_registers_certificates_and_sign_in_flags(tmp_path, good):
    pem = tmp_path / "cert.pem"
    pem.write_text(good[0] + good[1])
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "m365_emulator", "--port", "0", "--tenant", TENANT),
            *("--client-id", CLIENT_ID, "--client-certificate", str(pem), "--grant", "delegated"),
            *("--redirect-uri", "http://localhost/cb", "--mailbox", ADA),
            *("--mailbox-password", f"{ADA}=pw=with=equals"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().split(" on ")[1].split()[0]
        control = EmulatorControl(url)
        config = control.config()
        assert (config["grant"], config["redirect_uris"]) == ("delegated", ["http://localhost/cb"])
        assert config["mailbox_passwords"] == {ADA: "pw=with=equals"}
        (registered,) = control.call("GET", "/certificates")
        assert (
            registered["thumbprint_sha256"]
            == x509.load_pem_x509_certificate(good[1].encode()).fingerprint(hashes.SHA256()).hex().upper()
        )
        assert control.user(ADA)["has_password"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_help_documents_the_sign_in_flags():
    output = subprocess.run(
        [sys.executable, "-m", "m365_emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--grant", "--redirect-uri", "--mailbox-password", "--client-certificate", "--sign-in-url"):
        assert flag in output
