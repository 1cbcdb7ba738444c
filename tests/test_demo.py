"""`orch-mcp demo`: a moogle and N chocobo `orch-mcp serve` processes driven over MCP stdio, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from cli_helpers import run_cli

import orch_mcp

if not (Path(orch_mcp.__file__).parent / "serve.py").exists():
    pytest.skip(
        "orch_mcp/serve.py (the MCP server entry point the demo starts) does not exist yet", allow_module_level=True
    )

pytestmark = pytest.mark.slow


def test_demo_json_with_its_own_redis(env_for: dict[str, str]) -> None:
    env = {k: v for k, v in env_for.items() if k not in ("REDIS_URL", "ORCH_NAMESPACE")}
    args = ["--children", "3", "--tasks", "9", "--work-seconds", "0.05", "--json"]  # `run.py demo` runs the defaults
    proc = run_cli(["-m", "orch_mcp", "demo", *args], env, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    result = json.loads(proc.stdout)
    assert result["ok"] is True and result["error"] is None
    assert result["redis"].startswith(("a private redis-server ", "a private valkey-server "))
    assert result["children"] == 3 and result["elapsed_s"] < 30
    tasks = result["tasks"]
    assert [t["n"] for t in tasks] == list(range(1, 10))
    assert all(t["state"] == "done" and t["delivery_count"] == 1 for t in tasks)
    assert [t["child_id"] for t in tasks] == [1, 2, 3] * 3
    for t in tasks:
        assert t["result"] == f"chocobo {t['child_id']} did {t['prompt']!r}"
        assert len(t["task_id"]) == 32 and t["seconds"] > 0
    assert result["removed_keys"] > 0


def test_demo_text_on_a_given_redis_leaves_nothing_behind(env_for: dict[str, str], redis_url: str) -> None:
    proc = run_cli(
        ["-m", "orch_mcp", "demo", "--children", "2", "--tasks", "4", "--work-seconds", "0.05"], env_for, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line != line.rstrip()], "piped output has no trailing spaces"
    assert lines[0].strip() == "orch-mcp demo: results"
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0].isdigit()]
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("1", "1", "done"),
        ("2", "2", "done"),
        ("3", "1", "done"),
        ("4", "2", "done"),
    ]
    assert "4/4 tasks done by 2 chocobos in " in proc.stdout
    assert f"Redis:  {redis_url}" in proc.stdout
    # Progress went to stderr, one line per step.
    assert "moogle: report 4/4: task" in proc.stderr and "chocobo 2: shutdown received, stopping" in proc.stderr
    assert "Traceback" not in proc.stderr
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0, client.keys("*")
