"""`python -m bench [--size small|full] [--only NAME ...] [--json PATH]`: run the figure families, print the table,
write the JSON."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import history, library, mcp_stdio, scale, startup
from .harness import ROOT, Context, Figure, markdown, table, write_json

#: Family name -> what runs it, in the order they run (quick ones first).
FAMILIES: dict[str, Callable[[Context], list[Figure]]] = {
    "startup": startup.run,
    "library": library.run,
    "mcp": mcp_stdio.run,
    "scale": scale.run,
    "history": history.run,
}


def default_json(size: str) -> Path:
    """bench/results/<date>.json for a full run, <date>-small.json for a small one."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return ROOT / "bench" / "results" / (f"{day}.json" if size == "full" else f"{day}-small.json")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen families; 0 when they ran (a missed target is a figure, not a failure), 1 if one failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--size",
        choices=["small", "full"],
        default="full",
        help="full (the default; under 5 minutes on a 2-core machine) or small (for CI, under a minute)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FAMILIES),
        metavar="NAME",
        help=f"run only this family (repeatable): {', '.join(FAMILIES)}",
    )
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/<date>.json)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for README)")
    args = parser.parse_args(argv)
    ctx = Context(size=args.size)
    names = args.only or list(FAMILIES)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in names:
        began = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            got = FAMILIES[name](ctx)
        except Exception as exc:
            print(f"bench: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        figures += got
        print(f"bench: {name} took {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    path = args.json or default_json(args.size)
    write_json(path, ctx, figures, names)
    print(table(figures))
    if args.markdown:
        print()
        print(markdown(figures))
    print(f"\n{args.size} run, {time.perf_counter() - ctx.started:.0f} s; results in {path}")
    return 1 if failed else 0
