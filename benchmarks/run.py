"""make bench: comparisons, each measured side by side in one run, as ratios.

Absolute times drift on a shared machine; the ratios between handlers measured in the same
run are what docs/performance.md reports. Results: a table on stdout and
benchmarks/results.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THROUGHPUT_EVENTS = 200_000
STREAMS = 100
STREAM_EVENTS = 100_000
STREAM_LATENCY = 0.04  # seconds per request, a distant service
MEMORY_HANDLERS = 10
BODY_EVENTS = 10_000
OUTAGE_EVENTS = 600_000  # ten simulated minutes at 1,000 events/s
REFRESH_SECONDS = 3600
REPEATS = 3
# The emit() cases: benchmarks.cases' kind, and the key in results.json.
EMIT_KINDS = (
    ("ascii", "emit"),
    ("nonascii", "emit_nonascii"),
    ("trace", "emit_trace"),
    ("options", "emit_options"),
)
EMIT_LABELS = (
    "ASCII, ~60 bytes",
    "non-ASCII, 1 KB",
    "ASCII, OpenTelemetry's SDK loaded, outside and inside a span",
    "ASCII, trace_context off, buffer_at outside and inside a log_buffer() scope",
)
# The handler as released in 0.1.0 (one sender thread, one put at a time, botocore's own
# serializer): the "before" of the speed targets, measured in the same run as today's code.
BASELINE = "0.1.0"
BASELINE_REVISION = "f0c9492"


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIABENCHMARK0000000",
        AWS_SECRET_ACCESS_KEY="benchmark-not-a-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@contextmanager
def sink(fail: bool = False, latency: float = 0.0) -> Iterator[str]:
    """Run benchmarks.sink in its own process; yield its URL."""
    command = [sys.executable, "-m", "benchmarks.sink", *(["--fail"] if fail else [])]
    command += ["--latency", str(latency)] if latency else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@contextmanager
def baseline_code(revision: str = BASELINE_REVISION) -> Iterator[Path | None]:
    """The package at ``revision``, extracted from git; None where git cannot give it (not
    a checkout, or a shallow clone without that commit)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "watchtower_refresh"],
        capture_output=True,
        cwd=HERE.parent,
        check=False,
    )
    if archive.returncode != 0:
        why = archive.stderr.decode(errors="replace").strip()
        print(f"   {revision} not measured: git archive failed: {why}", file=sys.stderr)
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as directory:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+: no links out, no devices
                tar.extractall(directory, filter="data")
            else:  # pragma: no cover - an archive git made of our own files
                tar.extractall(directory)
        yield Path(directory)


def case(*args: object, baseline: Path | None = None) -> dict[str, Any]:
    """Run one case of benchmarks.cases in a fresh process and return its result; with
    ``baseline``, against the package code in that directory."""
    env = _environment()
    if baseline is not None:
        env["BENCH_BASELINE_DIR"] = str(baseline)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE.parent,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _medians(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in keys}
    result["all_arrived"] = all(run["all_arrived"] for run in runs)
    return result


def main() -> None:
    """Run every comparison and report."""
    results: dict[str, Any] = {}
    steps = 8
    print(f"1/{steps} emit() cost in the caller's thread ...", file=sys.stderr, flush=True)
    for kind, key in EMIT_KINDS:
        emit_runs = []
        for _ in range(REPEATS):  # fresh processes: the median of each handler over the runs
            with sink() as url:
                emit_runs.append(case("emit", url, kind))
        results[key] = {
            measure: {
                name: statistics.median(run[measure][name] for run in emit_runs)
                for name in emit_runs[0][measure]
            }
            for measure in ("us", "ratio_to_stream")
        }

    with baseline_code() as before:
        # BASELINE is our handler ("ours") run from the baseline's code.
        extra = (BASELINE,) if before is not None else ()

        def run_kind(name: str, kind: str, *args: object) -> dict[str, Any]:
            if kind == BASELINE:
                return case(name, "ours", *args, baseline=before)
            return case(name, kind, *args)

        print(f"2/{steps} delivery throughput ...", file=sys.stderr, flush=True)
        kinds = ("ours", "ours-spool", "watchtower", "raw", "raw-novalidate", *extra)
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for repeat in range(REPEATS):
            for kind in kinds[repeat % len(kinds) :] + kinds[: repeat % len(kinds)]:
                with sink() as url:
                    runs[kind].append(run_kind("throughput", kind, url, THROUGHPUT_EVENTS))
        measures = ("events_per_second", "cpu_seconds_per_million", "sender_us_per_event")
        results["throughput"] = {kind: _medians(rs, measures) for kind, rs in runs.items()}

        print(f"3/{steps} {STREAMS} streams, {STREAM_LATENCY} s per request", file=sys.stderr)
        stream_kinds = ("ours", "ours-one", "watchtower", "raw", *extra)
        stream_runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in stream_kinds}
        for repeat in range(REPEATS):
            turn = repeat % len(stream_kinds)
            for kind in stream_kinds[turn:] + stream_kinds[:turn]:
                with sink(latency=STREAM_LATENCY) as url:
                    stream_runs[kind].append(run_kind("streams", kind, url, STREAM_EVENTS, STREAMS))
        results["streams"] = {
            kind: _medians(rs, ("events_per_second",)) for kind, rs in stream_runs.items()
        }

    print(f"4/{steps} memory of {MEMORY_HANDLERS} handlers ...", file=sys.stderr, flush=True)
    memory_runs: dict[int, list[float]] = {1: [], MEMORY_HANDLERS: []}
    for _ in range(REPEATS):
        for count in memory_runs:
            with sink() as url:
                memory_runs[count].append(case("memory", count, url)["rss_growth_mib"])
    results["memory"] = {
        f"{count} handlers": {"rss_growth_mib": statistics.median(values)}
        for count, values in memory_runs.items()
    }

    print(f"5/{steps} CPU of one {BODY_EVENTS:,}-event put ...", file=sys.stderr, flush=True)
    results["body"] = case("body", BODY_EVENTS)

    print(f"6/{steps} AssumeRole calls per hour with 900 s credentials ...", file=sys.stderr)
    results["refresh"] = {
        kind: case("refresh", kind, REFRESH_SECONDS) for kind in ("ours", "watchtower")
    }

    print(f"7/{steps} memory during an outage ...", file=sys.stderr, flush=True)
    results["outage"] = {}
    for kind in ("ours", "watchtower"):
        with sink(fail=True) as url:
            results["outage"][kind] = case("outage", kind, url, OUTAGE_EVENTS)

    print(f"8/{steps} report", file=sys.stderr, flush=True)
    results["targets"] = targets(results)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the benchmark, its measured value and whether it is met."""
    ratio = results["emit"]["ratio_to_stream"]
    non_ascii = results["emit_nonascii"]["ratio_to_stream"]
    speed = results["throughput"]
    memory = results["memory"]
    outage = results["outage"]["ours"]
    streams = results["streams"]
    one, many = memory["1 handlers"], memory[f"{MEMORY_HANDLERS} handlers"]
    checks = {
        "emit <= 1.1 x StreamHandler (ASCII)": (ratio["watchtower-refresh"], 1.1),
        "emit <= 1.3 x StreamHandler (1 KB non-ASCII)": (non_ascii["watchtower-refresh"], 1.3),
        "emit <= 0.4 x watchtower": (ratio["watchtower-refresh"] / ratio["watchtower"], 0.4),
        "emit with a spool <= 2 x StreamHandler": (ratio["watchtower-refresh (spool)"], 2.0),
        "delivery with a spool >= 0.5 x memory-only": (
            speed["ours-spool"]["events_per_second"] / speed["ours"]["events_per_second"],
            0.5,
        ),
        "throughput >= 100,000 events/s": (speed["ours"]["events_per_second"], 100_000),
        "throughput >= watchtower's": (
            speed["ours"]["events_per_second"] / speed["watchtower"]["events_per_second"],
            1.0,
        ),
        "throughput >= raw botocore loop (no validation)": (
            speed["ours"]["events_per_second"] / speed["raw-novalidate"]["events_per_second"],
            1.0,
        ),
        "sender CPU <= 1.5 us per event": (speed["ours"]["sender_us_per_event"], 1.5),
        f"{STREAMS} streams >= 5 x one batch in flight": (
            streams["ours"]["events_per_second"] / streams["ours-one"]["events_per_second"],
            5.0,
        ),
    }
    if BASELINE in speed:  # measured only where git could give the baseline's code
        before, then = speed[BASELINE], streams[BASELINE]
        checks[f"delivery >= 2 x {BASELINE}"] = (
            speed["ours"]["events_per_second"] / before["events_per_second"],
            2.0,
        )
        checks[f"CPU per million events <= 0.5 x {BASELINE}"] = (
            speed["ours"]["cpu_seconds_per_million"] / before["cpu_seconds_per_million"],
            0.5,
        )
        checks[f"{STREAMS} streams >= 5 x {BASELINE}"] = (
            streams["ours"]["events_per_second"] / then["events_per_second"],
            5.0,
        )
    checks |= {
        f"memory, {MEMORY_HANDLERS} handlers <= 2 x one": (
            many["rss_growth_mib"] / one["rss_growth_mib"],
            2.0,
        ),
        "AssumeRole <= 6 per hour": (results["refresh"]["ours"]["assume_role_per_hour"], 6),
        "outage: held records <= cap": (outage["held"], outage["cap_events"]),
    }
    at_least = {name for name in checks if ">=" in name}
    return {
        name: {
            "value": value,
            "target": goal,
            "met": value >= goal if name in at_least else value <= goal,
        }
        for name, (value, goal) in checks.items()
    }


def table(results: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    lines = []
    for (_, key), label in zip(EMIT_KINDS, EMIT_LABELS, strict=True):
        emit = results[key]
        lines.append(
            f"emit() in the caller's thread, {label} (CPU us/record; ratio to StreamHandler "
            f"in the same round; medians of {REPEATS} runs)"
        )
        lines += [
            f"  {name:<42}{value:8.2f} us  {emit['ratio_to_stream'][name]:5.2f} x"
            for name, value in emit["us"].items()
        ]
    speed = results["throughput"]
    floor = speed["raw-novalidate"]
    lines.append(
        f"delivery of {THROUGHPUT_EVENTS:,} records, handle() to the sink's receipt (median of "
        f"{REPEATS} runs; x = against the raw loop without validation)"
    )
    for kind, r in speed.items():
        lines.append(
            f"  {kind:<24}{r['events_per_second']:10,.0f} events/s "
            f"{r['events_per_second'] / floor['events_per_second']:5.2f} x  "
            f"{r['cpu_seconds_per_million']:6.2f} CPU s per million  sender "
            f"{r['sender_us_per_event']:5.2f} us/event "
            f"{r['sender_us_per_event'] / floor['sender_us_per_event']:5.2f} x"
        )
    streams = results["streams"]
    lines.append(
        f"{STREAMS} streams ({{logger_name}}), {STREAM_EVENTS:,} records, "
        f"{STREAM_LATENCY * 1000:.0f} ms per request (x = against ours with one batch in "
        "flight, ours-one; raw = one put at a time)"
    )
    for kind, r in streams.items():
        lines.append(
            f"  {kind:<24}{r['events_per_second']:10,.0f} events/s "
            f"{r['events_per_second'] / streams['ours-one']['events_per_second']:5.2f} x"
        )
    memory = results["memory"]
    lines.append("memory: RSS growth once every handler has delivered")
    base = memory["1 handlers"]["rss_growth_mib"]
    for name, r in memory.items():
        lines.append(
            f"  {name:<24}{r['rss_growth_mib']:7.1f} MiB  {r['rss_growth_mib'] / base:5.2f} x"
        )
    body = results["body"]
    lines.append(f"CPU of one {body['events']:,}-event PutLogEvents, network excluded (ms)")
    for name, value in body["ms"].items():
        lines.append(f"  {name:<24}{value:7.2f} ms")
    lines.append(
        f"  build_body / serializer {body['body_ratio']:5.2f} x   "
        f"put_events / put_log_events {body['put_ratio']:5.2f} x"
    )
    lines.append(
        f"AssumeRole with 900 s credentials, {REFRESH_SECONDS} simulated s, a put every 10 s"
    )
    for kind, r in results["refresh"].items():
        per_hour = r["assume_role_per_hour"]
        lines.append(f"  {kind:<24}{r['assume_role_calls']:6d} calls  ({per_hour:.1f} per hour)")
    lines.append(f"outage: {OUTAGE_EVENTS:,} records logged while every put fails")
    for kind, r in results["outage"].items():
        lines.append(
            f"  {kind:<24}RSS +{r['rss_growth_mib']:7.1f} MiB  held {r['held']:>7,}  "
            f"dropped and counted {r['dropped_and_counted']:,}"
        )
    lines.append("targets")
    for name, t in results["targets"].items():
        lines.append(f"  {'met ' if t['met'] else 'MISS'} {name}: {t['value']:,.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
