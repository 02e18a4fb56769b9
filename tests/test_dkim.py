"""DKIM key records (mailstack.rules.dkim): TXT from a public key, parsing, key-size rules."""

from __future__ import annotations

import base64

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailstack.rules import dkim


def spki_pem(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def spki_b64(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def small_rsa_public_key(bits: int = 512) -> rsa.RSAPublicKey:
    """An RSA public key under 1024 bits (cryptography will not generate one)."""
    modulus = (1 << (bits - 1)) | 0xF1  # odd, top bit set: loads as a public key
    return rsa.RSAPublicNumbers(65537, modulus).public_key()


def test_txt_value_from_pem(rsa2048: rsa.RSAPrivateKey) -> None:
    public = rsa2048.public_key()
    value = dkim.txt_value(spki_pem(public))
    assert value == f"v=DKIM1; k=rsa; p={spki_b64(public)}"


def test_public_key_base64_strips_pem_and_whitespace(rsa2048: rsa.RSAPrivateKey) -> None:
    public = rsa2048.public_key()
    b64 = spki_b64(public)
    assert dkim.public_key_base64(spki_pem(public)) == b64
    assert dkim.public_key_base64(" ".join([b64[:100], b64[100:]])) == b64


def test_txt_value_is_what_dkimpy_verifies_with(rsa2048: rsa.RSAPrivateKey) -> None:
    """Sign with dkimpy using the private key and verify against our TXT value."""
    private_pem = rsa2048.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    record = dkim.txt_value(spki_pem(rsa2048.public_key()))
    message = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n"
    signature = dkimpy.sign(message, b"sel", b"example.com", private_pem, include_headers=[b"from", b"to", b"subject"])

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.example.com."
        return record.encode()

    assert dkimpy.verify(signature + message, dnsfunc=dnsfunc)


def test_ed25519_key() -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    b64 = base64.b64encode(raw).decode()
    assert dkim.key_bits(b64) == ("ed25519", 256)
    assert dkim.txt_value(b64) == f"v=DKIM1; k=ed25519; p={b64}"


def test_key_bits(rsa2048: rsa.RSAPrivateKey, rsa1024: rsa.RSAPrivateKey) -> None:
    assert dkim.key_bits(spki_b64(rsa2048.public_key())) == ("rsa", 2048)
    assert dkim.key_bits(spki_b64(rsa1024.public_key())) == ("rsa", 1024)


def test_pkcs1_rsa_public_key_accepted(rsa2048: rsa.RSAPrivateKey) -> None:
    der = rsa2048.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert dkim.key_bits(base64.b64encode(der).decode()) == ("rsa", 2048)


def test_key_under_1024_bits_refused() -> None:
    small = spki_b64(small_rsa_public_key(512))
    assert dkim.key_bits(small) == ("rsa", 512)
    with pytest.raises(dkim.DkimKeyError, match="512 bits is under the minimum of 1024"):
        dkim.txt_value(small)


@pytest.mark.parametrize("bad", ["not base64!!", "QUJD", ""])
def test_invalid_key_refused(bad: str) -> None:
    with pytest.raises(dkim.DkimKeyError):
        dkim.public_key_base64(bad)


def test_pending_placeholder() -> None:
    assert dkim.txt_value(dkim.PENDING_KEY) == "v=DKIM1; k=rsa; p=<generated-by-pulumi>"


def test_parse_record(rsa1024: rsa.RSAPrivateKey) -> None:
    b64 = spki_b64(rsa1024.public_key())
    record = dkim.parse(f"v=DKIM1; k=rsa; t=y:s; p={b64[:50]} {b64[50:]}")
    assert (record.algorithm, record.bits, record.revoked, record.testing) == ("rsa", 1024, False, True)
    assert record.public_key == b64
    assert dkim.size_problem(record) == ("warn", "RSA key of 1024 bits; 2048 is advised (RFC 8301 §3.2)")


def test_parse_revoked_and_errors(rsa2048: rsa.RSAPrivateKey) -> None:
    assert dkim.parse("v=DKIM1; p=").revoked
    with pytest.raises(dkim.DkimKeyError, match="no p= tag"):
        dkim.parse("v=DKIM1; k=rsa")
    with pytest.raises(dkim.DkimKeyError, match="not DKIM1"):
        dkim.parse("v=DKIM2; p=")
    with pytest.raises(dkim.DkimKeyError, match="not rsa or ed25519"):
        dkim.parse("k=dsa; p=")
    with pytest.raises(dkim.DkimKeyError, match="holds an rsa key"):
        dkim.parse(f"k=ed25519; p={spki_b64(rsa2048.public_key())}")
    with pytest.raises(dkim.DkimKeyError, match="tag=value"):
        dkim.parse("v=DKIM1; garbage")


def test_size_problem_levels(rsa2048: rsa.RSAPrivateKey) -> None:
    assert dkim.size_problem(dkim.parse(f"p={spki_b64(rsa2048.public_key())}")) is None
    small = dkim.parse(f"p={spki_b64(small_rsa_public_key(768))}")
    problem = dkim.size_problem(small)
    assert problem is not None and problem[0] == "fail" and "768 bits" in problem[1]


def test_record_name() -> None:
    assert dkim.record_name("odoo", "example.com") == "odoo._domainkey.example.com"
