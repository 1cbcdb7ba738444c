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
    """Namespace-wide keys: the session index, the "current" pointer, cleaned-up tombstones, sequence counters."""

    namespace: str

    @property
    def sessions(self) -> str:
        """Hash: session_id -> prefix."""
        return f"{self.namespace}:sessions"

    @property
    def current(self) -> str:
        """String: the session id the latest init_session created."""
        return f"{self.namespace}:current"

    def cleaned(self, session_id: str) -> str:
        """String with the session's TTL: written by cleanup_session, so a server can tell a session that was
        cleaned up from one that was never created (or expired)."""
        return f"{self.namespace}:cleaned:{session_id}"

    @property
    def pattern(self) -> str:
        """Glob pattern matching every namespace-wide key (for ACL rules)."""
        return f"{self.namespace}:*"

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
    def pattern(self) -> str:
        """Glob pattern matching every key of the session (for ACL rules)."""
        return self._key("*")

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

    @property
    def doorbell(self) -> str:
        """List (normal mode): child ids in the order their reports arrived, so the parent takes them in order."""
        return self._key("doorbell")

    def records(self, child_id: int) -> str:
        """Hash: task_id -> record JSON, for the tasks of child `child_id`."""
        return self._key(f"records:{child_id}")

    @property
    def task_child(self) -> str:
        """Hash: task_id -> child id; finds a task's records hash."""
        return self._key("task_child")

    @property
    def counts(self) -> str:
        """Hash: state -> number of tasks in it (and `finished:<n>` per child), kept by the transition scripts."""
        return self._key("counts")

    @property
    def leases(self) -> str:
        """Sorted set: task_id -> lease deadline (ms) of each working task sent with a deadline."""
        return self._key("leases")

    @property
    def parent_presence(self) -> str:
        """String with a short TTL: the token of the one live parent (moogle) of the session."""
        return self._key("presence:parent")

    @property
    def reaper(self) -> str:
        """String with a short TTL: held by the server running the reaper now (single flight)."""
        return self._key("reaper")

    @property
    def stopped(self) -> str:
        """Hash: child_id -> time (ms) the child took its shutdown; cleared when new work is sent to it."""
        return self._key("stopped")

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

    def parent_keys(self) -> list[str]:
        """The session-wide keys (no per-child ones)."""
        return [
            self.config,
            self.reports,
            self.reports_inflight,
            self.doorbell,
            self.task_child,
            self.counts,
            self.status,
            self.dead,
            self.last_seen,
            self.stopped,
            self.leases,
        ]

    def child_keys(self, child_id: int) -> list[str]:
        """The keys of child `child_id` (its presence key aside, which carries its own TTL)."""
        return [self.tasks(child_id), self.inflight(child_id), self.child_reports(child_id), self.records(child_id)]

    def fixed_keys(self, max_children: int) -> list[str]:
        """Every key of the session but the presence keys: a set fixed by the child count, whatever the history."""
        keys = self.parent_keys()
        for n in range(1, max_children + 1):
            keys += self.child_keys(n)
        return keys


def summoner_sessions_pattern() -> SessionKeys:
    """The keys of every summoner-mode session, as a pattern (`summoner:{*}`; the namespace is not in them)."""
    return SessionKeys(summoner_prefix("*"))


def normal_sessions_pattern(namespace: str) -> SessionKeys:
    """The keys of every normal-mode session whose project is the namespace (the default), as a pattern."""
    return SessionKeys(normal_prefix(f"{namespace}-*"))
