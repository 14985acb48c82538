"""mTLS between consortium parties: real gRPC over loopback with certificates from a real CA."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedtab.errors import AuthenticationError, KeyMaterialError
from fedtab.transport.status import abort_rpc
from fedtab.transport.tls import (
    PeerIdentity,
    TlsIdentity,
    certificate_fingerprint,
    certificate_subject,
    channel_credentials,
    check_identity,
    create_ca,
    issue_certificate,
    peer_identity,
    server_credentials,
)

METHOD = "/fedtab.test.WhoAmI/Ask"


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    try:
        peer = peer_identity(context)
    except AuthenticationError as exc:
        abort_rpc(context, exc)
    return f"{peer.name}|{peer.role}".encode()


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return create_ca("test consortium CA")


@pytest.fixture(scope="module")
def aggregator_identity(ca: tuple[bytes, bytes]) -> TlsIdentity:
    cert, key = issue_certificate(ca[0], ca[1], "aggregator", "aggregator")
    return TlsIdentity(ca_cert_pem=ca[0], cert_pem=cert, key_pem=key)


@pytest.fixture(scope="module")
def server_port(aggregator_identity: TlsIdentity) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "fedtab.test.WhoAmI",
        {"Ask": grpc.unary_unary_rpc_method_handler(_whoami)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(aggregator_identity))
    server.start()
    yield port
    server.stop(grace=None)


def _call(port: int, identity: TlsIdentity, host: str = "127.0.0.1") -> bytes:
    with grpc.secure_channel(f"{host}:{port}", channel_credentials(identity)) as channel:
        stub = channel.unary_unary(METHOD)
        result: bytes = stub(b"", timeout=10)
        return result


def _identity(ca: tuple[bytes, bytes], name: str, role: str, **kw: object) -> TlsIdentity:
    cert, key = issue_certificate(ca[0], ca[1], name, role, **kw)  # type: ignore[arg-type]
    return TlsIdentity(ca_cert_pem=ca[0], cert_pem=cert, key_pem=key)


@pytest.mark.parametrize(("name", "role"), [("bank-a", "bank"), ("operator", "operator")])
def test_consortium_client_is_accepted_and_identified(
    ca: tuple[bytes, bytes], server_port: int, name: str, role: str
) -> None:
    assert _call(server_port, _identity(ca, name, role)) == f"{name}|{role}".encode()


def test_aggregator_reachable_as_localhost(ca: tuple[bytes, bytes], server_port: int) -> None:
    assert _call(server_port, _identity(ca, "bank.b", "bank"), host="localhost") == b"bank.b|bank"


def test_client_from_another_ca_is_rejected(ca: tuple[bytes, bytes], server_port: int) -> None:
    other = create_ca("someone else's CA")
    cert, key = issue_certificate(other[0], other[1], "bank-a", "bank")
    # The intruder trusts our CA (so it would accept the server) but its own cert is foreign.
    intruder = TlsIdentity(ca_cert_pem=ca[0], cert_pem=cert, key_pem=key)
    with pytest.raises(grpc.RpcError) as info:
        _call(server_port, intruder)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_certificate_is_rejected(ca: tuple[bytes, bytes], server_port: int) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=ca[0])
    with (
        grpc.secure_channel(f"127.0.0.1:{server_port}", creds) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary(METHOD)(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_expired_client_certificate_is_rejected(ca: tuple[bytes, bytes], server_port: int) -> None:
    expired = _identity(
        ca, "bank-a", "bank", valid_days=1, not_before=datetime.now(UTC) - timedelta(days=3)
    )
    with pytest.raises(grpc.RpcError) as info:
        _call(server_port, expired)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # The same name with a current certificate works, so the expiry is what was refused.
    assert _call(server_port, _identity(ca, "bank-a", "bank")) == b"bank-a|bank"


def test_client_rejects_server_from_another_ca(ca: tuple[bytes, bytes]) -> None:
    other = create_ca("rogue CA")
    rogue = _identity(other, "aggregator", "aggregator")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "fedtab.test.WhoAmI", {"Ask": grpc.unary_unary_rpc_method_handler(_whoami)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(rogue))
    server.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            _call(port, _identity(ca, "bank-a", "bank"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)


def test_bank_certificate_cannot_serve_as_aggregator(ca: tuple[bytes, bytes]) -> None:
    # Even with the right SAN, a bank certificate lacks serverAuth and must not be accepted.
    bank_as_server = _identity(ca, "bank-a", "bank", hosts=["127.0.0.1"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "fedtab.test.WhoAmI", {"Ask": grpc.unary_unary_rpc_method_handler(_whoami)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(bank_as_server))
    server.start()
    try:
        with pytest.raises(grpc.RpcError):
            _call(port, _identity(ca, "bank-b", "bank"))
    finally:
        server.stop(grace=None)


def test_issued_certificate_fields(ca: tuple[bytes, bytes]) -> None:
    cert_pem, _ = issue_certificate(
        ca[0], ca[1], "aggregator", "aggregator", hosts=["agg.example.org", "10.0.0.7"]
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "aggregator"
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"agg.example.org", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "10.0.0.7",
        "127.0.0.1",
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    bank_pem, _ = issue_certificate(ca[0], ca[1], "bank-a", "bank")
    bank_eku = x509.load_pem_x509_certificate(bank_pem).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert list(bank_eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate_subject(bank_pem) == PeerIdentity("bank-a", "bank")


def test_fingerprint_is_stable_and_distinct(ca: tuple[bytes, bytes]) -> None:
    a, _ = issue_certificate(ca[0], ca[1], "bank-a", "bank")
    b, _ = issue_certificate(ca[0], ca[1], "bank-a", "bank")
    assert certificate_fingerprint(a) == certificate_fingerprint(a)
    assert certificate_fingerprint(a) != certificate_fingerprint(b)
    assert len(certificate_fingerprint(a)) == 64


def test_bad_inputs_are_key_material_errors(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(KeyMaterialError, match="role"):
        issue_certificate(ca[0], ca[1], "x", "admin")  # type: ignore[arg-type]
    with pytest.raises(KeyMaterialError, match="common name"):
        issue_certificate(ca[0], ca[1], "", "bank")
    other = create_ca("other")
    with pytest.raises(KeyMaterialError, match="does not belong"):
        issue_certificate(ca[0], other[1], "bank-a", "bank")
    with pytest.raises(KeyMaterialError, match="not a PEM"):
        certificate_fingerprint(b"garbage")


def test_check_identity(ca: tuple[bytes, bytes]) -> None:
    good = _identity(ca, "bank-a", "bank")
    assert check_identity(good) == PeerIdentity("bank-a", "bank")
    other = _identity(ca, "bank-b", "bank")
    with pytest.raises(KeyMaterialError, match="does not belong"):
        check_identity(TlsIdentity(ca[0], good.cert_pem, other.key_pem))
    foreign = create_ca("foreign")
    with pytest.raises(KeyMaterialError, match="not issued by"):
        check_identity(TlsIdentity(foreign[0], good.cert_pem, good.key_pem))
    expired = _identity(
        ca, "bank-a", "bank", valid_days=1, not_before=datetime.now(UTC) - timedelta(days=3)
    )
    with pytest.raises(KeyMaterialError, match="not valid now"):
        check_identity(expired)
    assert "key" not in repr(good).lower().replace("tlsidentity", "")


def test_peer_identity_refuses_plaintext_connection() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "fedtab.test.WhoAmI", {"Ask": grpc.unary_unary_rpc_method_handler(_whoami)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            channel.unary_unary(METHOD)(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no verified client certificate" in (info.value.details() or "")
    finally:
        server.stop(grace=None)


def test_peer_identity_refuses_unknown_role(ca: tuple[bytes, bytes], server_port: int) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "mallory"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admin"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    identity = TlsIdentity(
        ca_cert_pem=ca[0],
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with pytest.raises(grpc.RpcError) as info:
        _call(server_port, identity)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "unknown role 'admin'" in (info.value.details() or "")
