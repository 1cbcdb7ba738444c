"""What every figure family shares: the run's context (size, a private Redis), percentiles, the table and the JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from orch_mcp.embedded import EmbeddedRedis, redis_version

ROOT = Path(__file__).resolve().parents[1]
Size = Literal["small", "full"]
#: How a figure's ratio is judged: at most the limit, at least it, a value that must be 0, or only reported.
Check = Literal["le", "ge", "zero", "report"]


@dataclass
class Figure:
    """One row of the table: our figure, the baseline measured in the same run, and the target on their ratio."""

    name: str
    ours: float
    baseline: float | None
    unit: str
    check: Check = "report"
    limit: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / baseline (None without a baseline)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    @property
    def target(self) -> str:
        """The target as text: '<= 1.3', '>= 0.5', '= 0', or '' (reported only)."""
        if self.check == "le":
            return f"<= {self.limit:g}"
        if self.check == "ge":
            return f">= {self.limit:g}"
        if self.check == "zero":
            return "= 0"
        return ""

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None for a figure that is only reported)."""
        ratio = self.ratio
        if self.check == "zero":
            return self.ours == 0
        if self.check == "report" or ratio is None or self.limit is None:
            return None
        return ratio <= self.limit if self.check == "le" else ratio >= self.limit

    def to_json(self) -> dict[str, object]:
        """The row as JSON, with its ratio, target and verdict."""
        return {**asdict(self), "ratio": self.ratio, "target": self.target, "met": self.met}


@dataclass
class Context:
    """One run: its size, and the environment every family starts its processes with."""

    size: Size
    started: float = field(default_factory=time.perf_counter)

    def n(self, full: int, small: int) -> int:
        """A count for this run's size."""
        return full if self.size == "full" else small

    @contextmanager
    def redis(self) -> Iterator[str]:
        """A private redis-server for one family (memory and command counts are server-wide): its URL."""
        with EmbeddedRedis() as server:
            yield server.url

    @staticmethod
    def env(url: str, **extra: str) -> dict[str, str]:
        """The environment of an orch-mcp server or agent process of this run (no ORCH_* of the caller's)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "REDIS_"))}
        env.update({"REDIS_URL": url, "ORCH_NAMESPACE": "bench", **extra})
        return env


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) of the samples, nearest rank on the sorted samples (p99 of 300 = the 3rd highest)."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def p50(samples: list[float]) -> float:
    """The median."""
    return statistics.median(samples)


def p99(samples: list[float]) -> float:
    """The 99th percentile."""
    return percentile(samples, 99)


def ms(seconds: float) -> float:
    """Seconds as milliseconds."""
    return seconds * 1000


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "redis": redis_version(),
    }


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if value else "0"
    return f"{text} {unit}".rstrip()


def table(figures: list[Figure]) -> str:
    """The figures as a plain text table: figure, ours, baseline, ratio, target, met?"""
    head = ("figure", "ours", "baseline", "ratio", "target", "met?")
    rows = [head]
    for f in figures:
        verdict = {True: "yes", False: "NO", None: ""}[f.met]
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        rows.append((f.name, _cell(f.ours, f.unit), _cell(f.baseline, f.unit), ratio, f.target, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    """The figures as a Markdown table (for README)."""
    lines = ["| figure | ours | baseline | ratio | target | met? |", "|---|---:|---:|---:|---|---|"]
    for f in figures:
        verdict = {True: "yes", False: "**no**", None: ""}[f.met]
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        target = f.target.replace("<=", "≤").replace(">=", "≥")
        lines.append(
            f"| {f.name} | {_cell(f.ours, f.unit)} | {_cell(f.baseline, f.unit)} | {ratio} | {target} | {verdict} |"
        )
    return "\n".join(lines)


def write_json(path: Path, ctx: Context, figures: list[Figure], families: list[str]) -> None:
    """Write the run as JSON: when, where, which size and families, and every figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "size": ctx.size,
        "families": families,
        "seconds": round(time.perf_counter() - ctx.started, 1),
        "machine": machine(),
        "figures": [f.to_json() for f in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
