"""The demos: nothing lost while tokens expire, nor to a kill -9 with a spool."""

from __future__ import annotations

import dataclasses
import json
import re

import boto3
import pytest
import yaml

from watchtower_refresh._cli import EXIT_DEMO_LOST, EXIT_OK, EXIT_USAGE, main
from watchtower_refresh._cli import demo as _demo
from watchtower_refresh._cli.demo import SpoolDemoResult, demo_logging_config, run_demo
from watchtower_refresh.testing import FakeAWS


def test_demo_loses_nothing_across_expiries() -> None:
    lines: list[str] = []
    result = run_demo(
        duration=4, token_lifetime=1.0, clock_skew=0.6, threads=3, progress=lines.append
    )
    assert result.ok
    assert result.sent > 100
    assert result.delivered == result.sent
    assert result.lost == result.duplicates == 0
    # 4 s of 1-s tokens: at least two replaced, however busy the machine (a loaded one
    # sends fewer batches, so refreshes fewer times)
    assert result.assume_role_calls >= 3
    assert len(lines) >= 3


def test_demo_config_is_plain_data_that_round_trips() -> None:
    config = demo_logging_config("http://127.0.0.1:1")
    assert json.loads(json.dumps(config)) == config
    assert yaml.safe_load(yaml.safe_dump(config)) == config


# --------------------------------------------------------------------------- demo --spool


def count(out: str, label: str) -> int:
    match = re.search(rf"^{label} +(\d+)", out, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{out}"
    return int(match.group(1))


def test_spool_demo_kills_a_logging_process_and_replays_every_logged_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--spool", "--duration", "1"]) == EXIT_OK
    out, err = capsys.readouterr()
    logged = count(out, "records logged")
    delivered = count(out, "delivered by the child")
    left = count(out, "left in the spool")
    replayed = count(out, "replayed")
    twice = count(out, "came twice")
    assert logged >= 50  # fewer on a busy machine: what matters is that every one arrives
    assert delivered < logged  # the kill came with a backlog waiting on disk
    assert left == replayed  # the new handler delivered all the dead process left
    assert re.search(rf"^records read back +{logged} of {logged} logged$", out, re.MULTILINE)
    assert count(out, "records missing") == 0
    assert twice <= min(100, replayed)  # at most the batch in flight at the kill, replayed
    # Each record read back is either delivered by the child or replayed, duplicates included.
    assert logged + count(out, "logged at the kill") + twice == delivered + replayed
    assert out.rstrip().endswith("OK: every logged record arrived")
    assert "SIGKILL" in err
    assert not re.search(r"A[SK]IA[A-Z0-9]{12,}|fake-source-secret", out + err)


GOOD_SPOOL_RUN = SpoolDemoResult(
    logged=500,
    delivered_before_kill=200,
    left_in_spool=350,
    replayed=350,
    arrived=500,
    missing=0,
    duplicates=50,
    unconfirmed=0,
    dropped=0,
    batch_records=100,
    seconds=1.0,
    put_delay=0.2,
)


@pytest.mark.parametrize(
    "changes",
    [{"missing": 1, "arrived": 499}, {"duplicates": 101, "replayed": 401}, {"dropped": 1}],
    ids=["a-record-missing", "more-than-a-batch-twice", "dropped"],
)
def test_spool_demo_exits_1_when_a_logged_record_is_missing_or_duplicated_beyond_a_batch(
    changes: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert GOOD_SPOOL_RUN.ok
    result = dataclasses.replace(GOOD_SPOOL_RUN, **changes)
    monkeypatch.setattr(_demo, "run_spool_demo", lambda **options: result)
    assert main(["demo", "--spool"]) == EXIT_DEMO_LOST
    assert (
        capsys.readouterr()
        .out.rstrip()
        .endswith("records were lost, dropped or duplicated beyond a batch")
    )
    assert main(["demo", "--spool", "--json"]) == EXIT_DEMO_LOST
    assert json.loads(capsys.readouterr().out) == {**dataclasses.asdict(result), "ok": False}


def test_spool_demo_refuses_the_token_demos_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--spool", "--threads", "3", "--clock-skew", "1"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "watchtower-refresh demo: --clock-skew, --threads do not apply to --spool\n"
    )


def test_spool_demo_fails_clearly_when_the_logging_child_dies_by_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_demo, "_SPOOL_CHILD", "import sys; sys.exit('cannot start')")
    assert main(["demo", "--spool", "--duration", "1"]) == EXIT_DEMO_LOST
    err = capsys.readouterr().err
    assert "the logging child ended by itself (status 1)" in err
    assert "cannot start" in err


def test_spool_demo_counts_nothing_delivered_when_the_child_never_created_the_group() -> None:
    with FakeAWS() as aws:
        client = boto3.client("logs", region_name="us-east-1", endpoint_url=aws.endpoint_url)
        assert _demo._numbers(client) == {}
