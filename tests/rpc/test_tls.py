"""TCP listeners: TLS, and mutual TLS with certificates made here."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.rpc.conftest import BOTH_TOKEN, FakeWalletApi
from walletd.client import ClientTls, DaemonUnavailableError, WalletClient
from walletd.rpc.server import RpcServer, TlsFiles, build_server


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _make_ca("walletd test CA")
    other_ca, _ = _make_ca("some other CA")
    server, server_key = _issue(
        ca,
        ca_key,
        "walletd",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client, client_key = _issue(ca, ca_key, "payer-1", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pki = Pki(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        other_ca=d / "other-ca.pem",
    )
    pki.ca.write_bytes(_pem(ca))
    pki.other_ca.write_bytes(_pem(other_ca))
    pki.server_cert.write_bytes(_pem(server))
    pki.client_cert.write_bytes(_pem(client))
    _write_key(pki.server_key, server_key)
    _write_key(pki.client_key, client_key)
    return pki


@pytest.fixture
def tls_server(fake_api: FakeWalletApi, pki: Pki) -> Iterator[RpcServer]:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key)
    with build_server(fake_api, listen="127.0.0.1:0", tls=tls) as server:
        yield server


@pytest.fixture
def mtls_server(fake_api: FakeWalletApi, pki: Pki) -> Iterator[RpcServer]:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)
    with build_server(fake_api, listen="127.0.0.1:0", tls=tls) as server:
        yield server


def test_tls_round_trip(tls_server: RpcServer, pki: Pki) -> None:
    assert tls_server.address.startswith("127.0.0.1:")
    assert not tls_server.address.endswith(":0")
    tls = ClientTls(ca=pki.ca)
    with WalletClient(target=tls_server.address, token=BOTH_TOKEN, tls=tls, timeout=5) as c:
        assert c.pay("tls-1", "GET", "https://x").payment_id == "pay_tls-1"
        assert c.health() is True


def test_tls_server_name_override(tls_server: RpcServer, pki: Pki) -> None:
    port = tls_server.address.rsplit(":", 1)[1]
    tls = ClientTls(ca=pki.ca, server_name="localhost")
    with WalletClient(target=f"127.0.0.1:{port}", token=BOTH_TOKEN, tls=tls, timeout=5) as c:
        assert c.get_budget().client == "carol"


def test_tls_untrusted_server_is_refused(tls_server: RpcServer, pki: Pki) -> None:
    tls = ClientTls(ca=pki.other_ca)
    with (
        WalletClient(target=tls_server.address, token=BOTH_TOKEN, tls=tls, timeout=2) as c,
        pytest.raises(DaemonUnavailableError),
    ):
        c.get_budget()


def test_mtls_without_client_cert_is_refused(mtls_server: RpcServer, pki: Pki) -> None:
    tls = ClientTls(ca=pki.ca)
    with WalletClient(target=mtls_server.address, token=BOTH_TOKEN, tls=tls, timeout=2) as c:
        with pytest.raises(DaemonUnavailableError):
            c.get_budget()
        assert c.health() is False


def test_mtls_with_client_cert_is_accepted(mtls_server: RpcServer, pki: Pki) -> None:
    tls = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    with WalletClient(target=mtls_server.address, token=BOTH_TOKEN, tls=tls, timeout=5) as c:
        assert c.pay("mtls-1", "GET", "https://x").payment_id == "pay_mtls-1"
        assert c.health() is True


def test_socket_and_tcp_together(fake_api: FakeWalletApi, pki: Pki, socket_path: Path) -> None:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key)
    with build_server(fake_api, socket_path=socket_path, listen="127.0.0.1:0", tls=tls) as server:
        assert server.address == f"unix://{socket_path}"
        tcp = server.addresses[1]
        with WalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as local:
            assert local.get_budget().client == "carol"
        with WalletClient(target=tcp, token=BOTH_TOKEN, tls=ClientTls(ca=pki.ca), timeout=5) as c:
            assert c.get_budget().client == "carol"


def test_client_tls_with_a_socket_is_refused(pki: Pki, socket_path: Path) -> None:
    from walletd.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        WalletClient(socket=socket_path, tls=ClientTls(ca=pki.ca))


def test_a_socket_rebind_keeps_the_tcp_listener_on_its_port(
    no_watcher: None, fake_api: FakeWalletApi, pki: Pki, socket_path: Path
) -> None:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key)
    with build_server(fake_api, socket_path=socket_path, listen="127.0.0.1:0", tls=tls) as server:
        tcp = server.addresses[1]
        socket_path.unlink()
        assert server.check_socket() is True
        with WalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as local:
            assert local.get_budget().client == "carol"
        with WalletClient(target=tcp, token=BOTH_TOKEN, tls=ClientTls(ca=pki.ca), timeout=5) as c:
            assert c.get_budget().client == "carol"


def test_client_tls_takes_str_paths(mtls_server: RpcServer, pki: Pki) -> None:
    tls = ClientTls(ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
    with WalletClient(target=mtls_server.address, token=BOTH_TOKEN, tls=tls, timeout=5) as c:
        assert c.pay("mtls-str", "GET", "https://x").payment_id == "pay_mtls-str"
