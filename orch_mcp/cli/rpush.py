"""Push messages onto a Redis list (RPUSH), optionally publishing each on a channel too.

python -m orch_mcp.cli.rpush my-queue "Hello, World!"
python -m orch_mcp.cli.rpush my-queue "msg1" "msg2" "msg3"
echo -e "msg1\\nmsg2" | python -m orch_mcp.cli.rpush --stdin my-queue
python -m orch_mcp.cli.rpush --channel monitor-channel my-queue '{"type":"task"}'
python -m orch_mcp.cli.rpush --host localhost --port 6379 my-queue "message"
"""

from __future__ import annotations

import argparse
import sys

from ..messages import BaseMessage
from ..sender import RedisSender, SendResult
from . import common

EXAMPLES = """examples:
  %(prog)s my-queue "Hello, World!"
  %(prog)s my-queue msg1 msg2 msg3
  echo -e "msg1\\nmsg2" | %(prog)s --stdin my-queue
  %(prog)s --channel monitor-channel my-queue '{"type":"task"}'
  %(prog)s --url redis://localhost:6379/0 my-queue message"""


def build_parser() -> argparse.ArgumentParser:
    """The rpush command line."""
    prog = common.prog_name("rpush", "orch_mcp.cli.rpush")
    parser = common.make_parser(
        prog, "Push one or more messages onto the end of a Redis list (RPUSH).", EXAMPLES.replace("%(prog)s", prog)
    )
    parser.set_defaults(prog=prog)
    parser.add_argument("queue", help="the list to push onto")
    parser.add_argument("messages", nargs="*", metavar="message", help="messages to push, in order")
    parser.add_argument("--stdin", action="store_true", help="also read messages from standard input, one per line")
    parser.add_argument("--channel", metavar="CHANNEL", help="also PUBLISH each message on this pub/sub channel")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    common.add_connection_args(parser)
    return parser


def read_stdin_lines() -> list[str]:
    """Non-empty lines of standard input, without their line endings."""
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def handle(args: argparse.Namespace) -> int:
    """Push the messages and report the queue's new length."""
    messages: list[str | BaseMessage] = list(args.messages)
    if not messages and not args.stdin:
        return common.usage_error(args.prog, "give messages after the queue name, or --stdin")
    if args.stdin:
        messages += read_stdin_lines()
        if not messages:
            return common.fail("nothing to push: standard input had no non-empty lines")
    with RedisSender(redis_config=common.redis_config(args)) as sender:
        if args.channel:
            results = [sender.send_with_publish(args.queue, m, args.channel) for m in messages]
        else:
            results = [sender.send_messages(args.queue, messages)]
    last: SendResult = results[-1]
    # Each message is one PUBLISH, and a subscriber hears every one: the count is the subscribers a publish
    # reached (the most, should one have come or gone meanwhile), not a sum over the messages.
    receivers = max(r.receivers or 0 for r in results) if args.channel else None
    if args.json:
        common.print_json(
            {
                "queue": args.queue,
                "pushed": len(messages),
                "length": last.length,
                "channel": args.channel,
                "receivers": receivers,
            }
        )
    else:
        plural = "message" if len(messages) == 1 else "messages"
        line = f"pushed {len(messages)} {plural} onto {args.queue} (length now {last.length})"
        if args.channel:
            each = " each" if len(messages) > 1 else ""
            line += f"; published{each} on {args.channel} to {receivers} subscriber{'' if receivers == 1 else 's'}"
        print(line)
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.cli.rpush` / `orch-mcp rpush`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
