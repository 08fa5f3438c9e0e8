"""Each example runs as a user would run it, against the fake AWS, and its records arrive."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import logging
import logging.config
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import boto3
import pytest
import uvicorn
import yaml

import watchtower_refresh
from tests.conftest import REGION, ROLE_ARN, run_python
from watchtower_refresh import flush_handlers
from watchtower_refresh._aws.iam import permissions_policy
from watchtower_refresh.testing import FakeAWS, read_messages

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def read_with(aws: FakeAWS, group: str, region: str = REGION) -> list[str]:
    client = boto3.client("logs", region_name=region, endpoint_url=aws.endpoint_url)
    return list(read_messages(client, group))


def test_quickstart(aws: FakeAWS) -> None:
    result = run_python(aws, str(EXAMPLES / "quickstart.py"))
    assert result.returncode == 0, result.stderr
    assert read_with(aws, "/app/orders", "eu-west-1") == ["order 1042 placed"]
    assert aws.injector.counts["AssumeRole"] == 1


def test_quickstart_yaml_is_the_same_dict() -> None:
    source = (EXAMPLES / "quickstart.py").read_text()
    call = source[source.index("dictConfig(") + len("dictConfig(") : source.index("\n)\n") + 1]
    expected = ast.literal_eval(call.strip())
    assert yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text()) == expected


def test_logging_yaml_with_tokyo_time(aws: FakeAWS, messages: Callable[[str], list[str]]) -> None:
    config = yaml.safe_load((EXAMPLES / "logging.yaml").read_text())
    logging.config.dictConfig(config)
    logging.getLogger("orders").info("order %d placed", 1042)
    for handler in logging.getLogger().handlers:
        handler.close()
    (message,) = messages("/app/orders")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+09:00 INFO orders order 1042 placed", message
    )
    assert aws.injector.counts["AssumeRole"] == 1


def test_logging_ini_with_file_config(aws: FakeAWS, messages: Callable[[str], list[str]]) -> None:
    logging.config.fileConfig(EXAMPLES / "logging.ini", disable_existing_loggers=False)
    logging.getLogger("orders").warning("from an INI file")
    for handler in logging.getLogger().handlers:
        handler.close()
    (message,) = messages("/app/orders-ini")
    assert message.endswith(" WARNING orders from an INI file")
    assert aws.injector.counts["AssumeRole"] == 1


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_lambda_function_invoked_several_times(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch, messages: Callable[[str], list[str]]
) -> None:
    monkeypatch.setenv("WATCHTOWER_REFRESH_LOG_GROUP", "/app/orders-lambda")
    monkeypatch.setenv("WATCHTOWER_REFRESH_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("WATCHTOWER_REFRESH_CONSOLE", "false")
    function = load_module("lambda_function", EXAMPLES / "lambda_function.py")
    assert sum(aws.injector.counts.values()) == 0  # the init phase made no call
    for order in range(3):
        assert function.handler({"order": order}, LambdaContext()) == {"ok": True}
        # Delivered before the function returned: nothing waits for a frozen thread.
        got = messages("/app/orders-lambda")
        assert len(got) == 2 * (order + 1)
        assert any(m.endswith(f"order {order} received") for m in got)
        assert f'{{"order": {order}, "state": "stored"}}' in got
    assert aws.injector.counts["AssumeRole"] == 1


def test_fastapi_app_with_uvicorn_log_config(
    aws: FakeAWS,
    monkeypatch: pytest.MonkeyPatch,
    messages: Callable[[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "fastapi_app"))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    config = uvicorn.Config(
        "app:app", log_config=str(EXAMPLES / "fastapi_app" / "log_config.yaml"), lifespan="off"
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        for order, request_id in ((1, "req-a"), (2, "req-b")):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/orders/{order}", headers={"X-Request-ID": request_id}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.load(response) == {"order": order}
                assert response.headers["x-request-id"] == request_id
        missing = urllib.request.Request(
            f"http://127.0.0.1:{port}/orders/0", headers={"X-Request-ID": "req-fail"}
        )
        with pytest.raises(urllib.error.HTTPError, match="404") as failed:
            urllib.request.urlopen(missing, timeout=10)
        failed.value.close()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert flush_handlers(timeout=10)
    documents = [json.loads(m) for m in messages("/app/orders-api")]
    reads = {
        d["request_id"]: d["message"]
        for d in documents
        if d["logger"] == "orders" and d["level"] == "INFO"
    }
    assert reads == {"req-a": "order 1 read", "req-b": "order 2 read"}
    # The failing request's DEBUG record arrives before its ERROR; the others' never do.
    failing = [d for d in documents if d["request_id"] == "req-fail" and d["logger"] == "orders"]
    assert [(d["level"], d["message"]) for d in failing] == [
        ("DEBUG", "looking up order 0"),
        ("ERROR", "order 0 not found"),
    ]
    assert not [d for d in documents if d["level"] == "DEBUG" and d["request_id"] != "req-fail"]
    # Every record of a request carries its span's ids, one trace per request.
    traces = {d["request_id"]: d["trace_id"] for d in documents}
    assert len(set(traces.values())) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces.values())
    assert all(
        d["xray_trace_id"] == f"1-{d['trace_id'][:8]}-{d['trace_id'][8:]}" for d in documents
    )
    access = {d["request_id"]: d["message"] for d in documents if d["logger"] == "uvicorn.access"}
    # uvicorn writes the access record while the response is sent: it carries the request's id.
    assert sorted(access) == ["req-a", "req-b", "req-fail"]
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /orders/1 HTTP/1\.1" 200', access["req-a"])
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /orders/2 HTTP/1\.1" 200', access["req-b"])
    assert all(d["timestamp"].endswith("+00:00") for d in documents)
    console = capsys.readouterr().err
    assert "INFO uvicorn.error [-] Started server process" in console
    assert "INFO orders [req-a] order 1 read" in console
    assert re.search(r'INFO uvicorn.access \[req-b\] 127.0.0.1:\d+ - "GET /orders/2 HTTP', console)
    assert console.count("GET /orders/2") == 1
    for name in ("orders", "uvicorn.access", "uvicorn"):
        for handler in logging.getLogger(name).handlers:
            handler.close()
        logging.getLogger(name).handlers.clear()


def test_django_settings_logging(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch, messages: Callable[[str], list[str]]
) -> None:
    import django
    from django.test import Client

    monkeypatch.syspath_prepend(str(EXAMPLES / "django_site"))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "settings")
    monkeypatch.setenv("APP_LOG_ROLE_ARN", ROLE_ARN)
    django.setup()
    response = Client().get("/orders/42")
    assert response.status_code == 200
    assert Client().get("/orders/nope").status_code == 404  # django.request logs a WARNING
    assert Client().get("/orders/0").status_code == 404  # the view logs an ERROR
    assert flush_handlers(timeout=10)
    got = messages("/app/orders-django")
    ours = [m.split(" ", 1)[1] for m in got if " orders " in m]  # without the timestamp
    trace_ids = {m.split("[")[1].split("]")[0] for m in ours}
    assert len(trace_ids) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
    # Only the failing request's DEBUG record is shipped, before its ERROR, in its trace.
    assert [re.sub(r"\[[0-9a-f]{32}\] ", "", m) for m in ours] == [
        "INFO orders order 42 read",
        "DEBUG orders looking up order 0",
        "ERROR orders order 0 not found",
    ]
    ids = [re.findall(r"\[([0-9a-f]{32})\]", m) for m in ours]
    assert ids[1] == ids[2] != ids[0]
    assert any(re.search(r"\+0[12]:00 INFO orders \[[0-9a-f]{32}\] order 42 read$", m) for m in got)
    assert any("WARNING django.request [" in m and "Not Found: /orders/nope" in m for m in got)
    for name in ("orders", "django.request"):
        for handler in logging.getLogger(name).handlers:
            handler.close()
        logging.getLogger(name).handlers.clear()


def test_django_manage_py(aws: FakeAWS) -> None:
    code = "import logging; logging.getLogger('orders').info('from manage.py')"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=EXAMPLES / "django_site",
        env={**os.environ, **aws.environment(REGION), "APP_LOG_ROLE_ARN": ROLE_ARN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (message,) = read_with(aws, "/app/orders-django")
    assert message.endswith(" INFO orders [] from manage.py")  # in no trace


def test_dockerignore_keeps_the_virtualenvs_and_history_out_of_the_image() -> None:
    ignored = {
        line.strip()
        for line in (EXAMPLES.parent / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".venv-*", "dist", "build"} <= ignored
    # Everything git ignores at the top (caches, coverage) stays out of the image too.
    for line in (EXAMPLES.parent / ".gitignore").read_text().splitlines():
        name = line.strip().rstrip("/")
        if name and not name.startswith("#") and "*" not in name:
            assert any(fnmatch.fnmatch(name, p.removeprefix("**/")) for p in ignored), name
    dockerfile = (EXAMPLES / "ecs" / "Dockerfile").read_text()
    assert "docker build -f examples/ecs/Dockerfile" in dockerfile
    assert re.search(r"^CMD \[", dockerfile, re.M)  # exec form: SIGTERM reaches python


def dockerfile_stages() -> list[list[str]]:
    """The ECS Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = (EXAMPLES / "ecs" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_ecs_image_installs_a_wheel_and_keeps_no_source_layer() -> None:
    build, final = dockerfile_stages()
    assert build[0].endswith(" AS build")
    assert any(re.fullmatch(r"RUN pip wheel .*--no-deps --wheel-dir /wheels \.", i) for i in build)
    # The final image copies nothing of the sources: only the worker, and the wheel is
    # mounted for the one RUN that installs it, so it leaves no layer either.
    copies = [i for i in final if i.startswith(("COPY", "ADD"))]
    assert copies == ["COPY examples/ecs/worker.py /srv/worker.py"]
    (install,) = [i for i in final if "pip install" in i]
    assert install.startswith("RUN --mount=type=bind,from=build,source=/wheels,target=/wheels ")
    assert install.endswith("pip install --no-cache-dir /wheels/*.whl")
    assert not any("rm -rf" in i for i in final)
    assert final[-1] == 'CMD ["python", "/srv/worker.py"]'


def test_ecs_spool_is_on_the_task_volume_the_image_prepares() -> None:
    task = json.loads((EXAMPLES / "ecs" / "task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    spool = environment["WATCHTOWER_REFRESH_SPOOL_DIR"]
    (mount,) = container["mountPoints"]
    assert mount["containerPath"] == spool
    assert mount["sourceVolume"] in {volume["name"] for volume in task["volumes"]}
    assert container["restartPolicy"]["enabled"] is True
    _, final = dockerfile_stages()
    # The directory exists for the worker's user; ECS fills the volume from the VOLUME path.
    assert f"RUN mkdir -p {spool} && chown 1000:1000 {spool}" in final
    assert f'VOLUME ["{spool}"]' in final
    assert "USER 1000" in final


@pytest.mark.slow
@pytest.mark.wheel
def test_ecs_build_stage_builds_the_wheel(tmp_path: Path) -> None:
    # docker cannot run here: do what the build stage does, with only what it copies.
    build, _ = dockerfile_stages()
    context = tmp_path / "src"
    context.mkdir()
    for instruction in (i for i in build if i.startswith("COPY ")):
        *sources, target = instruction.split()[1:]
        for source in sources:
            destination = context / target / source if target.endswith("/") else context / target
            origin = EXAMPLES.parent / source
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, destination)
    (command,) = [i.removeprefix("RUN ") for i in build if i.startswith("RUN pip wheel")]
    argv = command.split()
    argv[argv.index("/wheels")] = str(tmp_path / "wheels")
    result = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("watchtower_refresh-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "watchtower_refresh/__init__.py" in archive.namelist()


def test_ecs_task_definition_and_image(aws: FakeAWS, tmp_path: Path) -> None:
    task = json.loads((EXAMPLES / "ecs" / "task-definition.json").read_text())
    assert task["taskRoleArn"].startswith("arn:aws:iam::")
    (container,) = task["containerDefinitions"]
    assert container["stopTimeout"] >= 30  # seconds between SIGTERM and SIGKILL
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(
        environment
    )
    dockerfile = (EXAMPLES / "ecs" / "Dockerfile").read_text()
    assert 'CMD ["python", "/srv/worker.py"]' in dockerfile
    assert (EXAMPLES / "ecs" / "worker.py").exists()
    # The policy shipped with the recipe is what `watchtower-refresh policy` prints for it.
    shipped = json.loads((EXAMPLES / "ecs" / "iam-policy.json").read_text())
    assert shipped == permissions_policy(
        [environment["WATCHTOWER_REFRESH_LOG_GROUP"]],
        region=environment["AWS_REGION"],
        account="123456789012",
    )
    # Run the worker with the task's environment; the fake AWS's keys stand in for the task
    # role's container credentials, the source from which it assumes the logging role.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(aws.environment(REGION))
    env.pop("AWS_DEFAULT_REGION")
    env.update(environment)
    # The task's volume: a directory of this test's instead of /var/spool/app-logs.
    env["WATCHTOWER_REFRESH_SPOOL_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "ecs" / "worker.py")],
        env={**env, "ORDERS": "4"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "in memory only" not in result.stderr  # the spool directory was usable
    assert list(tmp_path.iterdir()) == []  # all delivered: nothing left for a restarted one
    got = [json.loads(m) for m in read_with(aws, "/app/orders-ecs", environment["AWS_REGION"])]
    assert sorted(d["message"] for d in got) == [f"order {n} processed" for n in range(4)]
    assert {d["logger"] for d in got} == {"orders.worker"}


README = EXAMPLES.parent / "README.md"
DOCS = EXAMPLES.parent / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
_MARKED_BLOCK = re.compile(r"<!-- (file|excerpt): (\S+) -->\n```\w*\n(.*?)```\n", re.S)
_PYTHON_BLOCK = re.compile(r"(<!-- (?:file|excerpt): \S+ -->\n)?```python\n(.*?)```", re.S)


def page_name(page: Path) -> str:
    return str(page.relative_to(EXAMPLES.parent))


def marked_blocks() -> list[tuple[str, str, str, str]]:
    """(page, kind, path, text) of every code block of the README and docs/ marked as a file
    or an excerpt of one."""
    return [
        (page_name(page), *block)
        for page in PAGES
        for block in _MARKED_BLOCK.findall(page.read_text())
    ]


def test_the_docs_mark_the_recipe_files() -> None:
    marked = {path for _, _, path, _ in marked_blocks()}
    assert {
        "examples/quickstart.py",
        "examples/quickstart.yaml",
        "examples/fastapi_app/log_config.yaml",
        "examples/fastapi_app/app.py",
        "examples/django_site/settings.py",
        "examples/ecs/task-definition.json",
        "examples/lambda_function.py",
        "examples/test_orders_logging.py",
    } <= marked
    # Every page is read: the README and each page under docs/.
    assert {page for page, _, _, _ in marked_blocks()} >= {
        "README.md",
        "docs/getting-started.md",
        "docs/recipes.md",
    }


@pytest.mark.parametrize(
    ("page", "kind", "path", "text"), marked_blocks(), ids=lambda v: str(v)[:40]
)
def test_doc_snippets_are_the_files_under_examples(
    page: str, kind: str, path: str, text: str
) -> None:
    source = (EXAMPLES.parent / path).read_text()
    if kind == "file":
        assert text == source, f"{page}: the block marked as {path} differs from the file"
        return
    # An excerpt: the same lines, in a row, perhaps indented as a whole in the file.
    wanted = text.splitlines()
    lines = source.splitlines()
    for start in range(len(lines) - len(wanted) + 1):
        window = lines[start : start + len(wanted)]
        indent = window[0][: len(window[0]) - len(window[0].lstrip())]
        if all(
            line.startswith(indent) and line[len(indent) :] == want
            for line, want in zip(window, wanted, strict=True)
        ):
            return
    pytest.fail(f"{page}'s excerpt of {path} is not in the file:\n{text}")


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_every_python_block_of_the_docs_compiles(page: Path) -> None:
    # Blocks not marked as a file are short illustrations: they must at least be Python.
    for marked, text in _PYTHON_BLOCK.findall(page.read_text()):
        if not marked:
            compile(text, f"{page_name(page)} block", "exec")


@pytest.mark.parametrize("page", [README, DOCS / "getting-started.md"], ids=page_name)
def test_first_python_example_is_the_quickstart(page: Path) -> None:
    first = re.search(r"```python\n(.*?)```", page.read_text(), re.S)
    assert first is not None
    assert first.group(1) == (EXAMPLES / "quickstart.py").read_text()


def test_the_api_reference_documents_every_public_name() -> None:
    documented = set(
        re.findall(r"^::: watchtower_refresh\.(\w+)$", (DOCS / "api.md").read_text(), re.M)
    )
    assert documented == set(watchtower_refresh.__all__) - {"__version__"}


@pytest.mark.slow
def test_the_testing_example_passes_as_a_users_test(tmp_path: Path) -> None:
    # Outside this project's pytest configuration, as in an application's own suite.
    options = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *options, str(EXAMPLES / "test_orders_logging.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
