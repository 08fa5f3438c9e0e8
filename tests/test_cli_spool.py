"""``watchtower-refresh spool``: what a spool directory holds, as a table and as JSON."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from watchtower_refresh._cli import EXIT_OK, EXIT_USAGE, main
from watchtower_refresh._spool import Spool


def spooled(directory: Path, group: str, count: int, *, close: bool) -> Spool:
    spool = Spool.open(directory, group)
    assert spool is not None
    for n in range(count):
        spool.append("web-1", 1_795_000_000_000 + n, f"record {n}")
    if close:
        spool.close()
    return spool


def test_table_shows_each_owner_and_a_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spooled(tmp_path, "orders", 3, close=True)
    live = spooled(tmp_path, "payments", 2, close=False)
    try:
        assert main(["spool", "--dir", str(tmp_path)]) == EXIT_OK
    finally:
        live.close()
    out = capsys.readouterr().out
    header, dead, alive, total = out.splitlines()
    assert header.split()[:5] == ["LOG", "GROUP", "STATE", "PID", "RECORDS"]
    assert re.match(rf"^orders +dead +{os.getpid()} +3 +[\d,]+ +2026-11-18 ", dead)
    assert re.match(r"^payments +alive +\d+ +2 ", alive)
    assert total.startswith("2 owners, 5 records not yet delivered, ")
    assert total.endswith(" bytes; 1 dead (waiting for an adopter)")


def test_json_lists_owners_and_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spooled(tmp_path, "orders", 4, close=True)
    [segment] = tmp_path.glob("*/*.seg")
    segment.write_bytes(segment.read_bytes()[:-3])  # the last record torn
    assert main(["spool", "--dir", str(tmp_path), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    [owner] = report["owners"]
    assert (owner["group"], owner["state"], owner["records"]) == ("orders", "dead", 3)
    assert owner["oldest_timestamp_ms"] == 1_795_000_000_000
    assert report["total"] == {
        "owners": 1,
        "dead": 1,
        "records": 3,
        "bytes": owner["bytes"],
        "corrupt": 1,
    }
    assert main(["spool", "--dir", str(tmp_path)]) == EXIT_OK
    assert capsys.readouterr().out.rstrip().endswith("; 1 damaged record")


def test_an_empty_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spool", "--dir", str(tmp_path)]) == EXIT_OK
    assert capsys.readouterr().out == f"{tmp_path}: nothing spooled\n"


@pytest.mark.parametrize("argv", [["spool"], ["spool", "--dir", "/nonexistent/spool"]])
def test_a_missing_directory_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--dir" in err or "cannot read the spool directory /nonexistent/spool" in err
