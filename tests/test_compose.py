"""compose.yml as the seed describes it: `docker compose up -d` gives Redis 7 on 6379 with AOF, a volume,
a healthcheck and the dev-network network. No Docker engine runs here, so the file is checked as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml (a dev dependency) reads compose.yml")

COMPOSE = Path(__file__).resolve().parent.parent / "compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_redis_service_runs_redis_7(compose: dict[str, Any]) -> None:
    assert list(compose["services"]) == ["redis"]
    assert compose["services"]["redis"]["image"] == "redis:7"


def test_port_6379_is_published_on_localhost(compose: dict[str, Any]) -> None:
    ports = compose["services"]["redis"]["ports"]
    assert len(ports) == 1
    host_side, container_port = str(ports[0]).rsplit(":", 1)
    assert container_port == "6379" and host_side.endswith("6379")
    # No password on this Redis: it must not listen on every interface of the host.
    assert host_side == "127.0.0.1:6379"


def test_aof_is_on(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    words = command if isinstance(command, list) else str(command).split()
    assert words[0] == "redis-server"
    assert words[words.index("--appendonly") + 1] == "yes"


def test_data_lives_in_a_named_volume(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["redis"]["volumes"]
    names = {str(v).split(":", 1)[0]: str(v).split(":", 1)[1] for v in volumes}
    assert names == {"redis-data": "/data"}
    assert "redis-data" in compose["volumes"]


def test_healthcheck_pings(compose: dict[str, Any]) -> None:
    check = compose["services"]["redis"]["healthcheck"]
    assert check["test"] == ["CMD", "redis-cli", "ping"]
    assert check["retries"] >= 1


def test_dev_network(compose: dict[str, Any]) -> None:
    assert compose["services"]["redis"]["networks"] == ["dev-network"]
    # A fixed name, so containers of other compose projects can join it and reach the server as `redis`.
    assert compose["networks"]["dev-network"]["name"] == "dev-network"
