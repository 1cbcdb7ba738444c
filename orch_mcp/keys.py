"""Every Redis key, list, stream and channel name orch-mcp uses.

A session's keys all start with its prefix, whose braces are a Redis Cluster hash tag
(`summoner:{<uuid>}` or `{<project>-<host>-<seq>}`), so every key of one session lands in
one slot and multi-key commands and scripts on a session are cluster-safe.
"""

from __future__ import annotations

from dataclasses import dataclass


def summoner_prefix(session_id: str) -> str:
    """The prefix of a summoner-mode session."""
    return f"summoner:{{{session_id}}}"


def normal_prefix(project_host_seq: str) -> str:
    """The prefix of a normal-mode session, from `<project>-<host>-<seq>`."""
    return f"{{{project_host_seq}}}"


@dataclass(frozen=True)
class NamespaceKeys:
    """Namespace-wide keys: the session index, the "current" pointer, sequence counters."""

    namespace: str

    @property
    def sessions(self) -> str:
        """Hash: session_id -> prefix."""
        return f"{self.namespace}:sessions"

    @property
    def current(self) -> str:
        """String: the session id the latest init_session created."""
        return f"{self.namespace}:current"

    def seq(self, project_host: str) -> str:
        """Counter behind normal-mode prefixes `<project>-<host>-<seq>`."""
        return f"{self.namespace}:seq:{project_host}"


@dataclass(frozen=True)
class SessionKeys:
    """The keys of one session, all under its prefix (one hash slot)."""

    prefix: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @property
    def config(self) -> str:
        """String: the session config as JSON."""
        return self._key("config")

    def tasks(self, child_id: int) -> str:
        """List: parent -> child `child_id`."""
        return self._key(f"tasks:{child_id}")

    def inflight(self, child_id: int) -> str:
        """List: the tasks child `child_id` has taken and not yet reported."""
        return self._key(f"tasks:{child_id}:inflight")

    @property
    def reports(self) -> str:
        """List: child -> parent, shared by all children (summoner mode)."""
        return self._key("reports")

    def child_reports(self, child_id: int) -> str:
        """List: child `child_id` -> parent (normal mode)."""
        return self._key(f"reports:{child_id}")

    @property
    def reports_inflight(self) -> str:
        """List: reports the parent has taken and not yet acknowledged."""
        return self._key("reports:inflight")

    def task(self, task_id: str) -> str:
        """Hash: the record of one task."""
        return self._key(f"task:{task_id}")

    @property
    def task_index(self) -> str:
        """Sorted set: task_id -> creation time (ms); lists the session's task records."""
        return self._key("task_index")

    @property
    def status(self) -> str:
        """Stream: every state change, capped near 10,000 entries."""
        return self._key("status")

    @property
    def dead(self) -> str:
        """List: malformed or misrouted messages, with the reason."""
        return self._key("dead")

    @property
    def monitor(self) -> str:
        """Pub/sub channel mirroring the status stream (summoner mode)."""
        return self._key("monitor")

    def presence(self, child_id: int) -> str:
        """String with a short TTL: a live server serves child `child_id`."""
        return self._key(f"presence:{child_id}")

    @property
    def last_seen(self) -> str:
        """Hash: child_id -> last time (ms) the child took or reported a task."""
        return self._key("last_seen")

    def fixed_keys(self, max_children: int) -> list[str]:
        """Every key of the session except task records and presence keys (which carry their own TTL)."""
        keys = [self.config, self.reports, self.reports_inflight, self.task_index, self.status, self.dead]
        keys.append(self.last_seen)
        for n in range(1, max_children + 1):
            keys += [self.tasks(n), self.inflight(n), self.child_reports(n)]
        return keys
