"""The little JOSE and X.509 the sign-in needs, in pure Python: base64url, JWTs signed RS256 with a key
made at first use, RS256/PS256 signature checks, and the RSA public key and validity of a PEM
certificate (a minimal DER reader). The emulator is stdlib-only, so no cryptography package here."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# DigestInfo prefix of SHA-256 in an EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Padded or unpadded base64url; ValueError when it is not."""
    cleaned = text.strip().rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", cleaned):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


# ---- RSA ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RsaPublicKey:
    n: int
    e: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def jwk(self, kid: str) -> dict[str, str]:
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": kid,
            "n": b64url(_int_bytes(self.n)),
            "e": b64url(_int_bytes(self.e)),
        }

    def verify(self, algorithm: str, message: bytes, signature: bytes) -> bool:
        """RS256 (PKCS#1 v1.5) or PS256 (PSS, MGF1-SHA256, any salt length) over SHA-256."""
        if len(signature) != self.size:
            return False
        value = int.from_bytes(signature, "big")
        if value >= self.n:
            return False
        encoded = pow(value, self.e, self.n).to_bytes(self.size, "big")
        digest = hashlib.sha256(message).digest()
        if algorithm == "RS256":
            return secrets.compare_digest(encoded, _pkcs1_v15(digest, self.size))
        if algorithm == "PS256":
            return _pss_matches(encoded, digest, self.n.bit_length() - 1)
        return False


@dataclass(frozen=True)
class RsaPrivateKey:
    public: RsaPublicKey
    p: int
    q: int
    d: int

    def sign_rs256(self, message: bytes) -> bytes:
        encoded = int.from_bytes(_pkcs1_v15(hashlib.sha256(message).digest(), self.public.size), "big")
        # Chinese remainder theorem: two half-size exponentiations, about 3x faster than pow(m, d, n).
        m1 = pow(encoded, self.d % (self.p - 1), self.p)
        m2 = pow(encoded, self.d % (self.q - 1), self.q)
        h = (pow(self.q, -1, self.p) * (m1 - m2)) % self.p
        return (m2 + h * self.q).to_bytes(self.public.size, "big")


def _pkcs1_v15(digest: bytes, size: int) -> bytes:
    payload = _SHA256_DIGEST_INFO + digest
    return b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def _pss_matches(encoded: bytes, digest: bytes, em_bits: int) -> bool:
    """EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with SHA-256, reading the salt length from the encoding."""
    em_len = (em_bits + 7) // 8
    em = encoded[-em_len:]
    if len(encoded) - em_len and any(encoded[: len(encoded) - em_len]):
        return False
    if em_len < 32 + 2 or em[-1] != 0xBC:
        return False
    masked, h = em[: em_len - 33], em[em_len - 33 : em_len - 1]
    unused = 8 * em_len - em_bits
    if unused and masked[0] >> (8 - unused):
        return False
    db = bytearray(a ^ b for a, b in zip(masked, _mgf1(h, len(masked)), strict=True))
    if unused:
        db[0] &= 0xFF >> unused
    separator = next((i for i, byte in enumerate(db) if byte), None)
    if separator is None or db[separator] != 0x01:
        return False
    salt = bytes(db[separator + 1 :])
    return secrets.compare_digest(hashlib.sha256(b"\x00" * 8 + digest + salt).digest(), h)


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


def _probable_prime(candidate: int, rounds: int = 24) -> bool:
    if any(candidate % p == 0 for p in _SMALL_PRIMES):
        return False
    d, s = candidate - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(candidate - 3) + 2, d, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, candidate)
            if x == candidate - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1  # top two bits set: n has 2*bits bits
        if (candidate - 1) % e and _probable_prime(candidate):
            return candidate


def generate_rsa_key(bits: int = 2048) -> RsaPrivateKey:
    e = 65537
    p = _prime(bits // 2, e)
    q = _prime(bits // 2, e)
    while q == p:
        q = _prime(bits // 2, e)
    d = pow(e, -1, (p - 1) * (q - 1))
    return RsaPrivateKey(RsaPublicKey(p * q, e), p, q, d)


class SigningKey:
    """The emulator's token-signing key: one per process, made at first use (about a second; servers
    start making it in the background)."""

    _lock = threading.Lock()
    _key: RsaPrivateKey | None = None

    @classmethod
    def get(cls) -> RsaPrivateKey:
        with cls._lock:
            if cls._key is None:
                cls._key = generate_rsa_key()
            return cls._key

    @classmethod
    def kid(cls) -> str:
        return b64url(hashlib.sha256(_int_bytes(cls.get().public.n)).digest()[:20])


# ---- JWT ----------------------------------------------------------------------------------------


def encode_jwt(claims: dict[str, Any]) -> str:
    key = SigningKey.get()
    header = {"typ": "JWT", "alg": "RS256", "kid": SigningKey.kid()}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign_rs256(signing_input.encode('ascii')))}"


@dataclass(frozen=True)
class Jwt:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode_jwt(token: str) -> Jwt:
    """Split and decode a compact JWS without checking it; ValueError when it is malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three parts")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header and claims must be JSON objects")
    return Jwt(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2]))


# ---- X.509 certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    der: bytes
    public_key: RsaPublicKey
    not_before: float  # epoch seconds
    not_after: float

    @property
    def sha1_thumbprint(self) -> bytes:
        return hashlib.sha1(self.der).digest()  # noqa: S324 - x5t is defined as the SHA-1 of the DER

    @property
    def sha256_thumbprint(self) -> bytes:
        return hashlib.sha256(self.der).digest()


def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, contents, offset after) of the DER element at `at`."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or at + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[at : at + length], at + length


def _children(contents: bytes) -> list[tuple[int, bytes]]:
    items, at = [], 0
    while at < len(contents):
        tag, value, at = _der(contents, at)
        items.append((tag, value))
    return items


def _time(tag: int, value: bytes) -> float:
    text = value.decode("ascii")
    if tag == 0x17:  # UTCTime: two-digit years 50..99 are 19xx (RFC 5280 §4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:
        raise ValueError("not a certificate time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()


def parse_certificate(der: bytes) -> Certificate:
    tag, certificate, _ = _der(der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tbs = _children(_children(certificate)[0][1])
    if tbs and tbs[0][0] == 0xA0:  # explicit version
        tbs = tbs[1:]
    validity = _children(tbs[3][1])
    spki = _children(tbs[5][1])
    algorithm = _children(spki[0][1])
    if algorithm[0] != (0x06, _RSA_ENCRYPTION_OID):
        raise ValueError("only RSA certificates are supported")
    bits = spki[1][1]
    numbers = _children(_children(bits[1:])[0][1])
    n, e = (int.from_bytes(value, "big") for _, value in numbers[:2])
    return Certificate(der, RsaPublicKey(n, e), _time(*validity[0]), _time(*validity[1]))


def certificates_in_pem(text: str) -> list[Certificate]:
    """Every CERTIFICATE block of a PEM text (a private key next to them is ignored)."""
    found = [parse_certificate(base64.b64decode(block)) for block in _PEM_CERTIFICATE.findall(text)]
    if not found:
        raise ValueError("no PEM CERTIFICATE block found")
    return found
