"""The consortium's X.509 certificates and the gRPC mutual-TLS credentials built from them.

Threat model: honest-but-curious parties on an untrusted network. The consortium operator
creates a certificate authority at ``consortium init`` and keeps its private key offline; every
party (aggregator, each bank, the operator's job client) gets a certificate signed by that CA
whose subject names the party (``CN``) and its role (``OU`` = ``aggregator``/``bank``/
``operator``). All gRPC traffic uses mutual TLS against that CA alone (no system roots), so:

- an eavesdropper or a man in the middle sees and alters nothing (TLS 1.2+/1.3);
- a client without a certificate from the consortium CA, or with an expired one, is refused
  during the handshake, before any servicer code runs;
- a bank's identity *is* its certificate: servicers call :func:`peer_identity`, which reads the
  verified peer certificate from the gRPC auth context, never a name claimed in a message;
- only aggregator certificates carry ``serverAuth`` and subject-alternative names, so a bank's
  certificate cannot be used to impersonate the aggregator.

Out of scope: revocation (a compromised bank key requires a new consortium or a CA-issued
replacement with a deny-list at the aggregator) and protection of private keys at rest beyond
file mode 0600. Keys are EC P-256 from the operating system's entropy.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedtab.errors import AuthenticationError, KeyMaterialError

Role = Literal["aggregator", "bank", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
AGGREGATOR_DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
_CLOCK_SKEW = timedelta(minutes=5)
_MAX_CN_LENGTH = 64


@dataclass(frozen=True)
class TlsIdentity:
    """One party's mTLS material, all PEM: the consortium CA, its own certificate and key."""

    ca_cert_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"TlsIdentity(cert={certificate_fingerprint(self.cert_pem)[:16]}...)"


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end of a verified mTLS connection."""

    name: str
    role: Role


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_certificate(cert_pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate; raises :class:`KeyMaterialError` if it is not one."""
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"not a PEM X.509 certificate: {exc}") from exc


def load_private_key_pem(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM EC private key; raises :class:`KeyMaterialError` otherwise."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"unsupported private key type {type(key).__name__}")
    return key


def _check_validity(valid_days: int) -> None:
    if not isinstance(valid_days, int) or valid_days < 1:
        raise KeyMaterialError(f"certificate validity must be at least 1 day, got {valid_days!r}")


def _check_common_name(common_name: str) -> None:
    if not common_name or len(common_name) > _MAX_CN_LENGTH or not common_name.isprintable():
        raise KeyMaterialError(
            f"certificate common name must be 1-{_MAX_CN_LENGTH} printable characters, "
            f"got {common_name!r}"
        )


def create_ca(common_name: str, *, valid_days: int = 3650) -> tuple[bytes, bytes]:
    """Create a self-signed consortium CA; returns ``(ca_cert_pem, ca_key_pem)`` (EC P-256).

    Raises :class:`KeyMaterialError` for an empty/overlong name or ``valid_days < 1``.
    """
    _check_common_name(common_name)
    _check_validity(valid_days)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedtab consortium"),
        ]
    )
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_to_pem(key)


def _subject_alt_names(hosts: Sequence[str], role: Role) -> list[x509.GeneralName]:
    wanted = list(hosts) + (list(AGGREGATOR_DEFAULT_HOSTS) if role == "aggregator" else [])
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in wanted:
        host = host.strip().strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            try:
                names.append(x509.DNSName(host))
            except ValueError as exc:
                raise KeyMaterialError(f"invalid host name {host!r} for a certificate") from exc
    return names


def issue_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    common_name: str,
    role: Role,
    *,
    hosts: Sequence[str] = (),
    valid_days: int = 825,
    not_before: datetime | None = None,
) -> tuple[bytes, bytes]:
    """Issue a party certificate signed by the CA; returns ``(cert_pem, key_pem)`` (EC P-256).

    The subject is ``CN=common_name, OU=role``. Aggregator certificates get ``serverAuth`` and
    ``clientAuth`` and a SubjectAltName of ``hosts`` plus localhost/127.0.0.1; bank and operator
    certificates get ``clientAuth`` only (and ``hosts``, if any, as SANs). ``not_before``
    defaults to five minutes ago (clock skew); the certificate expires ``valid_days`` later.
    Raises :class:`KeyMaterialError` for an unknown role, a bad name or host, or a CA key that
    does not match the CA certificate.
    """
    if role not in ROLES:
        raise KeyMaterialError(f"unknown certificate role {role!r}; expected one of {ROLES}")
    _check_common_name(common_name)
    _check_validity(valid_days)
    ca_cert = load_certificate(ca_cert_pem)
    ca_key = load_private_key_pem(ca_key_pem)
    if ca_key.public_key() != ca_cert.public_key():
        raise KeyMaterialError("the CA private key does not belong to the CA certificate")
    start = not_before if not_before is not None else datetime.now(UTC) - _CLOCK_SKEW
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    key = _new_key()
    builder = _party_builder(ca_cert, ca_key, key, common_name, role, start, valid_days)
    sans = _subject_alt_names(hosts, role)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_to_pem(key)


def _party_builder(
    ca_cert: x509.Certificate,
    ca_key: Any,
    key: Any,
    common_name: str,
    role: Role,
    start: datetime,
    valid_days: int,
) -> x509.CertificateBuilder:
    """A party certificate's subject, validity, key usages and key identifiers (unsigned)."""
    public = key.public_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "aggregator":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedtab consortium"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 hex digest of the certificate's DER encoding."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _subject_role(cert: x509.Certificate) -> tuple[str, str]:
    """``(CN, OU)`` of a certificate's subject ('' when absent)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cn = str(cns[0].value) if len(cns) == 1 else ""
    ou = str(ous[0].value) if len(ous) == 1 else ""
    return cn, ou


def certificate_subject(cert_pem: bytes) -> PeerIdentity:
    """The ``(name, role)`` a certificate names; raises :class:`AuthenticationError` when its
    subject lacks exactly one CN or has no known role in its OU."""
    cn, ou = _subject_role(load_certificate(cert_pem))
    if not cn:
        raise AuthenticationError("peer certificate has no (single) common name")
    if ou not in ROLES:
        raise AuthenticationError(f"peer certificate {cn!r} has unknown role {ou!r}")
    return PeerIdentity(name=cn, role=cast(Role, ou))


def check_identity(identity: TlsIdentity) -> PeerIdentity:
    """Check that an identity is usable: the key matches the certificate, the certificate is
    signed by the CA and is currently valid. Returns the certificate's subject.

    Raises :class:`KeyMaterialError` naming what is wrong (an operator mistake such as mixing
    files from two consortia should fail at start-up, not as an opaque handshake error).
    """
    ca = load_certificate(identity.ca_cert_pem)
    cert = load_certificate(identity.cert_pem)
    key = load_private_key_pem(identity.key_pem)
    if key.public_key() != cert.public_key():
        raise KeyMaterialError("the TLS private key does not belong to the TLS certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyMaterialError("the TLS certificate was not issued by the consortium CA") from exc
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise KeyMaterialError(
            f"the TLS certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        return certificate_subject(identity.cert_pem)
    except AuthenticationError as exc:
        raise KeyMaterialError(str(exc)) from exc


def server_credentials(identity: TlsIdentity) -> grpc.ServerCredentials:
    """Server-side mTLS credentials: presents the party certificate, requires and verifies a
    client certificate issued by the consortium CA."""
    return grpc.ssl_server_credentials(
        [(identity.key_pem, identity.cert_pem)],
        root_certificates=identity.ca_cert_pem,
        require_client_auth=True,
    )


def channel_credentials(identity: TlsIdentity) -> grpc.ChannelCredentials:
    """Client-side mTLS credentials: trusts only the consortium CA, presents the party
    certificate. The server's name is checked against its SANs (localhost/127.0.0.1 and the
    configured aggregator host)."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_cert_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )


def peer_identity(context: grpc.ServicerContext) -> PeerIdentity:
    """The verified identity of the peer of an mTLS call, from its certificate's CN and OU.

    gRPC has already verified the certificate chain against the consortium CA during the
    handshake; this reads the PEM from ``context.auth_context()`` and parses it. Raises
    :class:`AuthenticationError` when the connection is not mTLS, the peer certificate is
    absent, or its subject lacks a name or a known role.
    """
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if len(pems) != 1:
        raise AuthenticationError("no verified client certificate on this connection")
    identity = certificate_subject(bytes(pems[0]))
    names = auth.get("x509_common_name") or []
    if names and bytes(names[0]).decode("utf-8", "replace") != identity.name:
        raise AuthenticationError("peer certificate common name disagrees with the TLS layer")
    return identity
