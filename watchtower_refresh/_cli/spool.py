"""``watchtower-refresh spool``: what a spool directory holds, and ``--deliver`` to send it."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import WatchtowerRefreshWarning
from .._options import as_float
from .._settings import DEFAULT_FLUSH_TIMEOUT
from .._spool import adopt, describe
from .check import EXIT_OK
from .config import UsageError, handler_options

if TYPE_CHECKING:
    from .._core.stats import DeliveryStats
    from .._handler import RefreshingCloudWatchLogHandler

__all__ = ["EXIT_NOT_DELIVERED", "run"]

EXIT_NOT_DELIVERED = 1
"""``--deliver``: records were dropped, refused (kept on disk, or discarded with
``--discard-refused``), or not all delivered within ``--timeout``."""


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """List the spool directory, or deliver it with ``--deliver``; return the exit code."""
    if args.deliver:
        return _deliver(args, out)
    try:
        owners = describe(args.dir)
    except OSError as exc:
        message = f"cannot read the spool directory {args.dir}: {exc.strerror or exc}"
        raise UsageError(message) from None
    total = {
        "owners": len(owners),
        "dead": sum(o.state == "dead" for o in owners),
        "records": sum(o.records for o in owners),
        "bytes": sum(o.bytes for o in owners),
        "corrupt": sum(o.corrupt for o in owners),
    }
    if args.json:
        listed = [dataclasses.asdict(o) for o in owners]
        out(json.dumps({"directory": args.dir, "owners": listed, "total": total}, indent=2))
        return EXIT_OK
    rows = [("LOG GROUP", "STATE", "PID", "RECORDS", "BYTES", "OLDEST (UTC)", "HOST")]
    rows += [
        (
            o.group,
            f"{o.state} ({o.adopter_pid})" if o.adopter_pid else o.state,
            str(o.pid),
            f"{o.records:,}",
            f"{o.bytes:,}",
            _when(o.oldest_timestamp_ms),
            o.host or "-",
        )
        for o in owners
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    summary = (
        f"{count(total['owners'], 'owner')}, {count(total['records'], 'record')} not yet "
        f"delivered, {count(total['bytes'], 'byte')}; {total['dead']:,} dead "
        "(waiting for an adopter)"
    )
    if total["corrupt"]:
        summary += f"; {count(total['corrupt'], 'damaged record')}"
    out("\n".join([*lines, summary] if owners else [f"{args.dir}: nothing spooled"]))
    return EXIT_OK


def count(number: int, noun: str) -> str:
    """``1 record``, ``2 records``: a number and its noun, plural when it is not one."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _deliver(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Deliver what dead processes left in the spool, as a handler of that log group would."""
    from .._handler import RefreshingCloudWatchLogHandler

    options = handler_options(args)
    if not options.get("log_group_name"):
        message = "--deliver needs --log-group (or a --config naming one)"
        raise UsageError(message)
    if not os.path.isdir(args.dir):
        message = f"cannot read the spool directory {args.dir}: not a directory"
        raise UsageError(message)
    options["spool_dir"] = args.dir
    # --timeout bounds the whole run: close() shares the flush's deadline rather than waiting
    # the handler's flush_timeout again after it, and each request fits in it.
    deadline = time.monotonic() + args.timeout
    given = options.get("flush_timeout", DEFAULT_FLUSH_TIMEOUT)
    options["flush_timeout"] = min(as_float("flush_timeout", given, minimum=0.0), args.timeout)
    handler = RefreshingCloudWatchLogHandler(**options)
    done, caught = _flush_and_close(handler, args.timeout, deadline)
    stats = handler.stats
    group = handler.log_group_name
    others, left = _left_by_dead(args.dir, group)
    refused = left if done else 0
    reason = _refusal(caught) if refused else None
    discarded = _discard(args.dir, group) if refused and args.discard_refused else 0
    ok = done and not stats.dropped and not refused
    if args.json:
        document = {
            **dataclasses.asdict(stats),
            "complete": done,
            "refused": refused,
            "refusal": reason,
            "discarded": discarded,
            "other_log_groups": others,
        }
        out(json.dumps(document, indent=2))
    else:
        lines = _delivery_lines(args.dir, group, stats, refused, reason, discarded, others)
        lines.append("result             " + ("OK" if ok else "INCOMPLETE: see above"))
        out("\n".join(lines))
    return EXIT_OK if ok else EXIT_NOT_DELIVERED


def _flush_and_close(
    handler: RefreshingCloudWatchLogHandler, timeout: float, deadline: float
) -> tuple[bool, list[warnings.WarningMessage]]:
    """Flush within ``timeout`` seconds, close by ``deadline``; return whether the flush
    completed and the handler's warnings, which are also given as they would have been."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WatchtowerRefreshWarning)
        try:
            done = handler.flush(timeout=timeout)
        finally:
            handler.close_by(deadline)
    for warning in caught:  # said as they would have been, under the caller's filters
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return done, caught


def _left_by_dead(directory: str, group: str) -> tuple[dict[str, int], int]:
    """What dead processes left in ``directory``: records of other log groups, by group,
    and the number of records of ``group``."""
    # For other groups, this run delivered none of it; for this group, what is left after
    # a complete run is what the service refused until fixed.
    others: dict[str, int] = {}
    left = 0
    for owner in describe(directory):
        if owner.state == "dead" and owner.group != group:
            others[owner.group] = others.get(owner.group, 0) + owner.records
        elif owner.state == "dead":
            left += owner.records
    return others, left


def _delivery_lines(
    directory: str,
    group: str,
    stats: DeliveryStats,
    refused: int,
    reason: str | None,
    discarded: int,
    others: dict[str, int],
) -> list[str]:
    """The text report of ``--deliver``, up to its result line."""
    dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.dropped.items())) or "none"
    lines = [
        f"log group          {group}",
        f"records delivered  {stats.replayed:,}",
        f"records dropped    {dropped}",
        f"damaged records    {stats.corrupt:,}",
    ]
    if refused and discarded:
        lines.append(f"records refused    {discarded:,}, discarded (--discard-refused): {reason}")
    elif refused:
        lines.append(
            f"records refused    {refused:,}, kept in {directory}: {reason}. Fix that and "
            "run again, or add --discard-refused to give them up"
        )
    if others:
        waiting = ", ".join(f"{name} ({count(n, 'record')})" for name, n in sorted(others.items()))
        lines.append(f"other log groups   {waiting}: run again with --log-group for each")
    return lines


def _refusal(caught: list[warnings.WarningMessage]) -> str:
    """The refusal the handler warned about, which says what to fix."""
    for warning in reversed(caught):
        if issubclass(warning.category, WatchtowerRefreshWarning):
            return str(warning.message)
    return "the service refused them (no reason was given)"


def _discard(directory: str, group: str) -> int:
    """Give up what dead processes of ``group`` left in ``directory``; return how many."""
    discarded = 0
    with adopt(directory, group) as adoption:
        for batch in adoption:
            batch.ack()
            discarded += len(batch.records)
    return discarded
