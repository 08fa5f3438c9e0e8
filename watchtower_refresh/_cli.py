"""The ``watchtower-refresh`` command.

Exit codes:
    0  success
    1  the demo lost or duplicated records
    2  usage error (unknown option, invalid value)
    3  the demo could not start (the ``demo`` extra is not installed)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from . import __version__
from ._redact import redact

__all__ = ["EXIT_DEMO_LOST", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_DEMO_LOST = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        message = f"must be a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return value


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        message = f"must be a whole number from 1 to 64, not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchtower-refresh",
        description="Tools for the watchtower-refresh CloudWatch Logs handler.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="log through expiring tokens against a local fake AWS and count what was lost",
        description=(
            "Start moto on 127.0.0.1 with tokens that expire every few seconds, log from "
            "several threads through a handler configured with dictConfig and a role ARN, "
            "read every event back and report what was lost. Nothing leaves this machine."
        ),
    )
    demo.add_argument("--duration", type=_positive, default=20.0, help="seconds to log (20)")
    demo.add_argument(
        "--token-lifetime", type=_positive, default=4.0, help="seconds each token lives (4)"
    )
    demo.add_argument(
        "--clock-skew",
        type=float,
        default=3.0,
        help="seconds the fake AWS's clock runs ahead of this machine's (3)",
    )
    demo.add_argument("--threads", type=_count, default=2, help="threads logging at once (2)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _demo(args: argparse.Namespace) -> int:
    try:
        from ._demo import run_demo
    except ImportError as exc:
        print(f"watchtower-refresh demo: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(
        f"Logging for {args.duration:g} s from {args.threads} threads; tokens live "
        f"{args.token_lifetime:g} s; the fake AWS's clock runs {args.clock_skew:g} s ahead.",
        file=sys.stderr,
    )
    result = run_demo(
        duration=args.duration,
        token_lifetime=args.token_lifetime,
        clock_skew=args.clock_skew,
        threads=args.threads,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        print(
            "\n".join(
                [
                    f"records sent              {result.sent}",
                    f"records delivered         {result.delivered}",
                    f"records lost              {result.lost}",
                    f"duplicates                {result.duplicates}",
                    f"AssumeRole calls          {result.assume_role_calls}"
                    f"  (one per {result.seconds / max(1, result.assume_role_calls):.1f} s;"
                    f" tokens live {result.token_lifetime:g} s)",
                    f"expired-token answers     {result.expired_token_answers}",
                    f"expired-token retries     {result.credential_refreshes}"
                    "  (fresh credentials fetched, batch resent)",
                    f"other retries             {result.retried}",
                    "result                    "
                    + ("OK: nothing lost" if result.ok else "FAILED: records were lost"),
                ]
            )
        )
    return EXIT_OK if result.ok else EXIT_DEMO_LOST


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code (see the module docstring)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _demo(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"watchtower-refresh {args.command}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
