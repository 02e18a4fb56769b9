"""Certificates for lab and test servers: a lab CA and the certificates it issues.

Real deployments take certificate paths from the stack (``mailstack:gateway.tls``);
the lab issues its own from one CA per stack, so that every TLS client in the lab can
verify the chain the way a sending MTA or an MTA-STS fetcher does (``mailstack check
--ca-file`` with the lab's CA): the gateways' STARTTLS certificates name their host,
the MTA-STS policy hosts ``mta-sts.<domain>``. ``self_signed`` stays for tests that
need one certificate and no chain.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ec_key() -> ec.EllipticCurvePrivateKey:
    """The lab CA's and servers' keys: P-256 (RFC 8422), a hundred times faster to make
    than RSA 2048 and taken by Postfix, Python's ssl and every client here."""
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))


def self_signed(hostnames: Sequence[str], *, days: int = 365, ca: bool = False) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 private key PEM) for ``hostnames`` (SANs; the first is
    also the CN). ``ca=True`` lets a client trust the certificate itself as its CA."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    builder = _validity(x509.CertificateBuilder(), days).subject_name(name).issuer_name(name)
    builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA (certificate and key, PEM) that issues the lab's server certificates;
    ``issuers_pem``: the certificates above it (an intermediate's root), which its
    chain files carry too."""

    cert_pem: bytes
    key_pem: bytes
    issuers_pem: bytes = b""

    @classmethod
    def create(cls, name: str, days: int = 3650, *, path_length: int = 0) -> Authority:
        """A new self-signed CA named ``name``; ``path_length`` 0: it signs server
        certificates only, 1: also an intermediate (``subordinate``)."""
        return cls._make(name, days, path_length, None)

    def subordinate(self, name: str, days: int = 3650) -> Authority:
        """An intermediate CA named ``name`` issued by this one (which needs
        ``path_length=1``): its server chain files are leaf, intermediate, this CA."""
        return self._make(name, days, 0, self)

    @classmethod
    def _make(cls, name: str, days: int, path_length: int, parent: Authority | None) -> Authority:
        key = _ec_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        signer: ec.EllipticCurvePrivateKey = key
        issuer = subject
        if parent is not None:
            loaded = serialization.load_pem_private_key(parent.key_pem, password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            signer, issuer = loaded, x509.load_pem_x509_certificate(parent.cert_pem).subject
        builder = _validity(x509.CertificateBuilder(), days).subject_name(subject).issuer_name(issuer)
        builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if parent is not None:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        cert = builder.sign(signer, hashes.SHA256())
        above = parent.cert_pem + parent.issuers_pem if parent is not None else b""
        return cls(cert.public_bytes(serialization.Encoding.PEM), _pem(key), above)

    def issue(self, hostnames: Sequence[str], *, days: int = 825, key_pem: bytes | None = None) -> tuple[bytes, bytes]:
        """(certificate PEM followed by the CA's and its issuers', server key PEM) for ``hostnames``
        (SANs, the first also the CN): a chain file as Postfix and Python servers load it.
        ``key_pem``: certify this P-256 key (a DANE digest published for it stays valid)."""
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        ca_key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        given = serialization.load_pem_private_key(key_pem, password=None) if key_pem else None
        if given is not None and not isinstance(given, ec.EllipticCurvePrivateKey):
            raise ValueError("the key to certify must be an EC key")
        key = given or _ec_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
        builder = _validity(x509.CertificateBuilder(), days).subject_name(subject).issuer_name(ca_cert.subject)
        builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem + self.issuers_pem, _pem(key)


def write_self_signed(workdir: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``hostname`` as ``workdir/tls/{cert,key}.pem``
    (the key 0600): for tests that run one server without the lab's CA."""
    directory = workdir / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed([hostname])
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    return cert_path, key_path
