"""``--config``: dictConfig JSON and YAML, fileConfig INI, and what is said of anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROLE_ARN
from watchtower_refresh._cli import EXIT_OK, EXIT_USAGE, main
from watchtower_refresh._cli.config import UsageError, load_handler_options
from watchtower_refresh.testing import FakeAWS

ROOT = Path(__file__).resolve().parent.parent
INI = str(ROOT / "examples" / "logging.ini")
ACCOUNT = "123456789012"


def test_the_readme_ini_file_gives_the_handler_options_file_config_would() -> None:
    assert load_handler_options(INI) == {
        "log_group_name": "/app/orders-ini",
        "role_arn": "arn:aws:iam::123456789012:role/app-logs",
        "duration_seconds": 900,
    }


def test_check_with_the_readme_ini_file(aws: FakeAWS, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", INI, "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["log_group"] == "/app/orders-ini"
    assert report["credential_source"] == "assume-role"
    assert report["read_back"] is True


def test_policy_with_the_readme_ini_file(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "--config", INI, "--account", ACCOUNT, "--region", "eu-west-1"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders-ini:*" in out
    assert main(["policy", "--config", INI, "--document", "caller"]) == EXIT_OK
    assert "role/app-logs" in capsys.readouterr().out


def ini(tmp_path: Path, handler: str, name: str = "logging.cfg") -> str:
    path = tmp_path / name
    path.write_text(
        "[loggers]\nkeys = root\n[handlers]\nkeys = console, cw\n[formatters]\nkeys =\n"
        "[logger_root]\nhandlers = cw\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\n"
        f"[handler_cw]\n{handler}"
    )
    return str(path)


def test_ini_positional_and_keyword_arguments_bind_as_the_constructor_would(
    tmp_path: Path,
) -> None:
    path = ini(
        tmp_path,
        "class = watchtower_refresh.RefreshingCloudWatchLogHandler\n"
        "args = ('/app/a', 'web/%%(process)s')\nkwargs = {'region_name': 'us-west-2'}\n",
    )
    assert load_handler_options(path) == {
        "log_group_name": "/app/a",
        "log_stream_name": "web/%(process)s",
        "region_name": "us-west-2",
    }


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (
            "class = watchtower_refresh.RefreshingCloudWatchLogHandler\n"
            "args = (open('/etc/passwd'),)\n",
            "args must be a Python literal",
        ),
        (
            "class = watchtower_refresh.RefreshingCloudWatchLogHandler\nargs = '/app/a'\n",
            "args must be a tuple and kwargs a dict",
        ),
        (
            "class = watchtower_refresh.RefreshingCloudWatchLogHandler\n"
            "kwargs = {'no_such_option': 1}\n",
            "unexpected keyword argument 'no_such_option'",
        ),
        ("class = logging.StreamHandler\n", "(found: none)"),
        ("class = x\n[handler_cw]\nclass = y\n", "is not a valid INI file"),
    ],
)
def test_ini_problems_are_said(tmp_path: Path, handler: str, message: str) -> None:
    with pytest.raises(UsageError, match=r"logging\.cfg") as raised:
        load_handler_options(ini(tmp_path, handler))
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [("logging.conf", "[handlers]\nkeys = cw\n"), ("config", "{}"), ("config", "[handlers]\n")],
)
def test_other_names_are_read_by_their_first_character(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError, match=r"\(found: none\)"):
        load_handler_options(str(path))


def test_an_unsupported_format_is_said_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logging.toml"
    path.write_text('version = 1\n[handlers.cw]\nclass = "x"\n')
    assert main(["policy", "--config", str(path), "--account", ACCOUNT]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "logging.toml: unsupported format (.toml): --config reads a dictConfig file" in err
    assert "fileConfig INI file (.ini, .cfg, .conf)" in err
    assert "not valid JSON" not in err


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        ("missing", "cannot read {path}: No such file or directory"),
        ("broken", "{path} is not valid JSON: Expecting property name"),
        ("binary", "cannot read {path}: not UTF-8 text"),
    ],
)
def test_check_json_reports_a_bad_config_file_on_stdout_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, problem: str
) -> None:
    path = tmp_path / "logging.json"
    if setup == "broken":
        path.write_text("{not json")
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe{}")
    code = main(["check", "--config", str(path), "--role-arn", ROLE_ARN, "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE
    report = json.loads(out)  # automation reading stdout learns what went wrong
    assert report["exit_code"] == EXIT_USAGE
    assert report["problem"].startswith(problem.format(path=path))
    # No group could be read: the report names the default, and says it is the default.
    assert (report["log_group"], report["default_log_group"]) == ("watchtower", True)
    assert err.startswith(f"watchtower-refresh check: {problem.format(path=path)}")
