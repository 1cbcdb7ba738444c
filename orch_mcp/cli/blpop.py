"""Pop messages from Redis lists (BLPOP): one, several, or continuously until Ctrl+C.

    python -m orch_mcp.cli.blpop my-queue
    python -m orch_mcp.cli.blpop my-queue --timeout 10
    python -m orch_mcp.cli.blpop my-queue --count 5
    python -m orch_mcp.cli.blpop my-queue --parse
    python -m orch_mcp.cli.blpop my-queue --continuous --timeout 5

Exit code 1 when the wait timed out with nothing received.
"""

from __future__ import annotations

import argparse
import json

from ..receiver import MessageReceiver, ReceivedMessage
from . import common

EXAMPLES = """examples:
  %(prog)s my-queue                        wait for one message
  %(prog)s my-queue --timeout 10           give up after 10 s (exit code 1)
  %(prog)s my-queue --count 5              up to 5 messages (stops early on a timeout)
  %(prog)s my-queue --parse                show messages field by field
  %(prog)s my-queue --continuous --timeout 5   keep receiving until Ctrl+C"""


def build_parser() -> argparse.ArgumentParser:
    """The blpop command line."""
    prog = common.prog_name("blpop", "orch_mcp.cli.blpop")
    parser = common.make_parser(
        prog,
        "Pop messages from the front of Redis lists, waiting for them (BLPOP).",
        EXAMPLES.replace("%(prog)s", prog),
    )
    parser.add_argument("queues", nargs="+", metavar="queue", help="the list(s) to pop from (the first non-empty wins)")
    parser.add_argument(
        "--timeout",
        type=common.seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long each wait may take; 0 waits for ever (default: 0)",
    )
    parser.add_argument(
        "--count", type=common.int_range(1), default=1, metavar="N", help="receive up to N messages (default: 1)"
    )
    parser.add_argument("--parse", action="store_true", help="parse messages and show them field by field")
    parser.add_argument(
        "--continuous", action="store_true", help="keep receiving until Ctrl+C; timeouts just start the next wait"
    )
    parser.add_argument("--json", action="store_true", help="print each message as one JSON document (one per line)")
    common.add_connection_args(parser)
    return parser


def as_document(received: ReceivedMessage) -> dict[str, object]:
    """A received message for --json: queue, raw data, time, and the parsed message or the parse error."""
    return {
        "queue": received.queue,
        "data": received.raw_data,
        "received_at": received.received_at,
        "message": received.message.to_dict() if received.message is not None else None,
        "parse_error": received.parse_error,
    }


def as_text(received: ReceivedMessage, *, parse: bool, show_queue: bool) -> str:
    """A received message for people: the raw text, or with --parse its fields one per line."""
    if not parse:
        return f"{received.queue}: {received.raw_data}" if show_queue else received.raw_data
    if received.message is None:
        return f"{received.queue}: not a valid message ({received.parse_error})\n  raw: {received.raw_data}"
    fields = received.message.to_dict()
    lines = [f"{received.queue}: {fields.pop('type')} message"]
    for key, value in fields.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        lines.append(f"  {key}: {shown}")
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    """Receive as asked; exit code 1 if a bounded wait ended with nothing received."""
    received = 0
    with MessageReceiver(redis_config=common.redis_config(args)) as receiver:
        try:
            while args.continuous or received < args.count:
                message = receiver.receive(args.queues, args.timeout)
                if message is None:
                    if args.continuous:
                        continue
                    break
                received += 1
                if args.json:
                    common.print_json(as_document(message))
                else:
                    print(as_text(message, parse=args.parse, show_queue=len(args.queues) > 1), flush=True)
        except KeyboardInterrupt:
            if not args.continuous:
                raise
            common.note(f"stopped after {received} message{'' if received == 1 else 's'}")
            return common.EXIT_OK
    if received == 0:
        return common.fail(f"no message on {', '.join(args.queues)} within {args.timeout:g} s")
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.cli.blpop` / `orch-mcp blpop`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
