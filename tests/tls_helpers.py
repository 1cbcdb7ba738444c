"""Certificates made in the test (with `cryptography`, which mcp already depends on through pyjwt[crypto]) and a
real redis-server that speaks only TLS and requires client certificates."""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orch_mcp.embedded import EmbeddedRedis, find_redis_server


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class CertificateAuthority:
    """A self-signed CA in `directory` that issues server and client certificates."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"orch-mcp test {name}"))
            .issuer_name(_name(f"orch-mcp test {name}"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),  # cert and CRL signing
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self._write(name, self.cert, self.key)

    def issue(self, name: str, *, server: bool) -> Pem:
        """A certificate for `name` signed by this CA: a server's (for localhost only) or a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost")]  # not 127.0.0.1: the tests of the verify modes connect by it
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return self._write(name, builder.sign(self.key, hashes.SHA256()), key)

    def _write(self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
        pem = Pem(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pem.key.chmod(0o600)
        return pem


class TLSRedis(EmbeddedRedis):
    """A redis-server listening with TLS only (`--port 0 --tls-port P`) that requires client certificates."""

    def __init__(self, ca: Pem, server: Pem, binary: str | None = None) -> None:
        super().__init__(binary=binary)
        self.ca, self.server = ca, server

    @property
    def url(self) -> str:
        """rediss://localhost:P/0 (the server certificate names localhost)."""
        return f"rediss://localhost:{self.port}/0"

    def command(self) -> list[str]:
        """EmbeddedRedis's command with the plain port closed and TLS on its port."""
        cmd = [*super().command(), "--port", "0", "--tls-port", str(self.port)]
        cmd += ["--tls-cert-file", str(self.server.cert), "--tls-key-file", str(self.server.key)]
        cmd += ["--tls-ca-cert-file", str(self.ca.cert), "--tls-auth-clients", "yes"]
        return cmd


def tls_support(binary: str | None = None) -> str | None:
    """None if the server binary speaks TLS, else why not (for a skip reason)."""
    binary = binary or find_redis_server()
    try:
        done = subprocess.run(
            # Certificates that do not exist: a TLS build refuses them and exits before it listens on anything.
            [
                *(binary, "--port", "0", "--tls-port", "1", "--save", "", "--logfile", ""),
                *("--tls-cert-file", "/nonexistent/orch.pem", "--tls-key-file", "/nonexistent/orch.key"),
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} cannot be run: {exc}"
    said = done.stdout + done.stderr
    # Redis without TLS does not know the directive; Valkey knows it but has no TLS connection type built in.
    if "Bad directive" in said or "Failed finding TLS support" in said:
        return (
            f"{binary} was built without TLS (it cannot listen with TLS); point ORCH_REDIS_SERVER at a TLS build "
            "such as Debian's /usr/bin/redis-server"
        )
    return None
