"""The demo loses nothing while tokens expire, and its config is plain data."""

from __future__ import annotations

import json

import yaml

from watchtower_refresh._demo import demo_logging_config, run_demo


def test_demo_loses_nothing_across_expiries() -> None:
    lines: list[str] = []
    result = run_demo(
        duration=4, token_lifetime=1.0, clock_skew=0.6, threads=3, progress=lines.append
    )
    assert result.ok
    assert result.sent > 100
    assert result.delivered == result.sent
    assert result.lost == result.duplicates == 0
    assert result.assume_role_calls >= 4  # at least three tokens replaced
    assert len(lines) >= 3


def test_demo_config_is_plain_data_that_round_trips() -> None:
    config = demo_logging_config("http://127.0.0.1:1")
    assert json.loads(json.dumps(config)) == config
    assert yaml.safe_load(yaml.safe_dump(config)) == config
