"""The entity sent with every put: checked as given, or built from ECS, Kubernetes, Lambda, EC2."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import logger_for
from watchtower_refresh import ConfigurationError, WatchtowerRefreshWarning
from watchtower_refresh._aws.entity import detect, parse
from watchtower_refresh.testing import Captured, FakeAWS, Fault

ENTITY = {
    "keyAttributes": {"Type": "Service", "Name": "orders", "Environment": "prod"},
    "attributes": {"PlatformType": "Generic"},
}
TASK = {
    "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef",
    "Family": "orders-task",
    "ServiceName": "orders",
}


class Metadata:
    """A metadata endpoint on loopback: answers GET (and IMDSv2's PUT) from ``answers``."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests.append(self.path)
                found = owner.answers.get(self.path)
                if found is None:
                    self.send_error(404)
                    return
                body = found.encode() if isinstance(found, str) else json.dumps(found).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ecs() -> Iterator[Metadata]:
    server = Metadata({"/v4/task": TASK})
    yield server
    server.close()


# ----------------------------------------------------------------------------- as given


def test_a_mapping_or_its_json_is_taken_as_the_service_takes_it() -> None:
    assert parse("entity", ENTITY) == ENTITY
    assert parse("entity", json.dumps(ENTITY)) == ENTITY
    assert parse("entity", " AUTO ") == "auto"
    assert parse("entity", None) is None
    assert parse("entity", "") is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"keyAttributes": {"Type": "Service"}}, "2 to 4 of Type"),
        ({"keyAttributes": {"Type": "Service", "Owner": "me"}}, "2 to 4 of Type"),
        ({"keyAttributes": {"Type": "Service", "Name": 3}}, "a string to a string"),
        (
            {
                "keyAttributes": {"Type": "Service", "Name": "a"},
                "attributes": {f"k{n}": "v" for n in range(11)},
            },
            "at most 10",
        ),
        ({"keyAttributes": {"Type": "Service", "Name": "x" * 513}}, "1 to 32 characters"),
        ({"KeyAttributes": {}}, "keyAttributes and attributes only"),
        ("service=orders", '"auto" or a JSON object'),
        (["auto"], '"auto" or a mapping'),
    ],
)
def test_an_entity_outside_the_service_rules_is_refused_at_construction(
    value: Any, match: str
) -> None:
    from watchtower_refresh import RefreshingCloudWatchLogHandler

    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler("/a", entity=value)


# ----------------------------------------------------------------------------- auto


def test_ecs_task_metadata_names_the_service_and_its_cluster(ecs: Metadata) -> None:
    found = detect({"ECS_CONTAINER_METADATA_URI_V4": f"{ecs.url}/v4"})
    assert found == {
        "keyAttributes": {"Type": "Service", "Name": "orders", "Environment": "ecs:prod"},
        "attributes": {"PlatformType": "AWS::ECS"},
    }


def test_metadata_is_read_directly_whatever_the_proxy_variables_say(
    ecs: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    found = detect({"ECS_CONTAINER_METADATA_URI_V4": f"{ecs.url}/v4"})
    assert found is not None
    assert found["keyAttributes"]["Name"] == "orders"


def test_a_task_outside_a_service_is_named_by_its_family(ecs: Metadata) -> None:
    ecs.answers["/v4/task"] = {k: v for k, v in TASK.items() if k != "ServiceName"}
    found = detect({"ECS_CONTAINER_METADATA_URI_V4": f"{ecs.url}/v4"})
    assert found is not None
    assert found["keyAttributes"]["Name"] == "orders-task"


def test_otel_variables_name_the_service_and_environment(ecs: Metadata) -> None:
    found = detect(
        {
            "ECS_CONTAINER_METADATA_URI_V4": f"{ecs.url}/v4",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,team=a",
        }
    )
    assert found is not None
    assert found["keyAttributes"] == {
        "Type": "Service",
        "Name": "checkout",
        "Environment": "staging",
    }


def test_an_eks_pod_is_its_workload_in_its_namespace() -> None:
    found = detect(
        {
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "HOSTNAME": "orders-7d9f8b6c5d-x2x4z",
            "POD_NAMESPACE": "shop",
            "K8S_CLUSTER_NAME": "prod-eks",
            "NODE_NAME": "ip-10-0-1-2.ec2.internal",
        }
    )
    assert found == {
        "keyAttributes": {"Type": "Service", "Name": "orders", "Environment": "eks:prod-eks/shop"},
        "attributes": {
            "PlatformType": "AWS::EKS",
            "EKS.Cluster": "prod-eks",
            "K8s.Namespace": "shop",
            "K8s.Workload": "orders",
            "K8s.Node": "ip-10-0-1-2.ec2.internal",
            "K8s.Pod": "orders-7d9f8b6c5d-x2x4z",
        },
    }


def test_a_lambda_function_is_named_by_itself() -> None:
    found = detect({"AWS_LAMBDA_FUNCTION_NAME": "resize"})
    assert found == {
        "keyAttributes": {"Type": "Service", "Name": "resize", "Environment": "lambda:default"},
        "attributes": {},
    }


def test_an_ec2_instance_from_instance_metadata() -> None:
    imds = Metadata(
        {
            "/latest/api/token": "token",
            "/latest/dynamic/instance-identity/document": {"instanceId": "i-0abc"},
        }
    )
    try:
        found = detect({"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
    finally:
        imds.close()
    assert found is not None
    assert found["attributes"] == {"PlatformType": "AWS::EC2", "EC2.InstanceId": "i-0abc"}
    assert found["keyAttributes"]["Environment"] == "ec2:default"


def test_nowhere_known_gives_no_entity_and_an_unreadable_one_gives_none() -> None:
    assert detect({"AWS_EC2_METADATA_DISABLED": "true"}) is None
    closed = Metadata({})
    closed.close()  # nothing listens there any more
    environ = {
        "ECS_CONTAINER_METADATA_URI_V4": f"{closed.url}/v4",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    assert detect(environ, timeout=0.5) is None


# ----------------------------------------------------------------------------- on every put


def entities(puts: list[Captured]) -> list[Any]:
    return [json.loads(put.body).get("entity") for put in puts]


def test_a_given_entity_goes_with_every_put(aws: FakeAWS, make_handler: Any) -> None:
    puts = aws.injector.capture("PutLogEvents")
    handler = make_handler("/svc/entity", entity=ENTITY, log_stream_name="{logger_name}")
    for name in ("a", "b"):
        logger = logger_for(handler, name)
        logger.info("first")
        assert handler.flush(timeout=10)
        logger.info("second")
        assert handler.flush(timeout=10)
    assert len(puts) == 4
    assert [json.loads(put.body)["entity"] for put in puts] == [ENTITY] * 4
    assert handler.stats.delivered == 4


def test_auto_is_read_once_on_the_sender_and_goes_with_every_put(
    aws: FakeAWS, make_handler: Any, ecs: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"{ecs.url}/v4")
    puts = aws.injector.capture("PutLogEvents")
    handler = make_handler("/svc/auto", entity="auto", log_stream_name="{logger_name}")
    assert ecs.requests == []  # the constructor reads nothing
    for name in ("a", "b", "c"):
        logger_for(handler, name).info("hello")
        assert handler.flush(timeout=10)
    expected = {
        "keyAttributes": {"Type": "Service", "Name": "orders", "Environment": "ecs:prod"},
        "attributes": {"PlatformType": "AWS::ECS"},
    }
    assert [json.loads(put.body)["entity"] for put in puts] == [expected] * 3
    assert ecs.requests == ["/v4/task"]


def test_a_synchronous_put_never_waits_for_auto(
    aws: FakeAWS, make_handler: Any, ecs: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"{ecs.url}/v4")
    puts = aws.injector.capture("PutLogEvents")
    handler = make_handler("/svc/sync", entity="auto", use_queues=False)
    logger = logger_for(handler)
    logger.info("first")  # starts the read on a thread of its own
    for thread in threading.enumerate():
        if thread.name == "watchtower-refresh-entity":
            thread.join(10)
    logger.info("second")
    assert entities(puts)[-1]["keyAttributes"]["Name"] == "orders"
    assert handler.stats.delivered == 2
    assert ecs.requests == ["/v4/task"]


def test_a_refused_entity_warns_once_naming_the_error_type(aws: FakeAWS, make_handler: Any) -> None:
    aws.injector.add_fault(
        Fault(
            "", action="PutLogEvents", answer={"rejectedEntityInfo": {"errorType": "InvalidEntity"}}
        )
    )
    handler = make_handler("/svc/refused", entity=ENTITY)
    logger = logger_for(handler)
    with pytest.warns(
        WatchtowerRefreshWarning, match=r"refused the entity.*InvalidEntity"
    ) as caught:
        for n in range(3):
            logger.info("record %d", n)
            assert handler.flush(timeout=10)
    assert len([w for w in caught if "entity" in str(w.message)]) == 1
    assert handler.stats.delivered == 3  # the events are kept


def test_no_entity_sends_none(aws: FakeAWS, make_handler: Any) -> None:
    puts = aws.injector.capture("PutLogEvents")
    handler = make_handler("/svc/plain")
    logger_for(handler).log(logging.INFO, "plain")
    assert handler.flush(timeout=10)
    assert entities(puts) == [None]
