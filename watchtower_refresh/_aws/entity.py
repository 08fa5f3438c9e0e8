"""The ``entity`` sent with every PutLogEvents: checked as given, or built from where we run.

An entity ties a group's logs to the service that wrote them in CloudWatch's "explore
related" views. ``parse`` checks a given one against the service's limits (2 to 4
``keyAttributes`` among ``Type``, ``ResourceType``, ``Identifier``, ``Name`` and
``Environment``; up to 10 ``attributes``). ``detect`` builds one as the CloudWatch agent
builds it for a service (``Type: Service``, ``Name``, ``Environment`` as
``<platform>:<where>``, ``PlatformType`` and the platform's attributes), from ECS task
metadata, a Kubernetes pod's environment, Lambda's or EC2's instance metadata. It does
network I/O (loopback or link-local, each request bounded by ``timeout``): the handler
calls it once, on its sender's thread, never in the constructor or in ``emit()``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigurationError

__all__ = ["AUTO", "ENTITY_TIMEOUT", "detect", "parse"]

AUTO = "auto"
ENTITY_TIMEOUT = 1.0  # seconds: each metadata request, at most
KEY_NAMES = ("Type", "ResourceType", "Identifier", "Name", "Environment")
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_IMDS = "http://169.254.169.254"
# A pod named by a Deployment ends in -<replica set hash>-<5 characters>; a StatefulSet's
# or a DaemonSet's in -<ordinal> or -<5 characters>.
_POD_SUFFIX = re.compile(r"(-[a-z0-9]{6,10})?-[a-z0-9]{5}$|-\d+$")
# Metadata endpoints are local to the task or instance: never through HTTP(S)_PROXY, as
# botocore's own metadata fetchers go.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def parse(name: str, value: object) -> dict[str, dict[str, str]] | str | None:
    """Return ``entity`` checked: None, ``"auto"``, or ``{"keyAttributes": ..., ...}``.

    Accepts a mapping or its JSON text.

    Raises:
        ConfigurationError: Not one of those, or outside the service's limits.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == AUTO:
            return AUTO
        try:
            value = json.loads(text)
        except ValueError:
            message = f'{name} must be "auto" or a JSON object with keyAttributes, not {text!r}'
            raise ConfigurationError(message) from None
    if not isinstance(value, Mapping):
        message = f'{name} must be "auto" or a mapping, not {type(value).__name__}'
        raise ConfigurationError(message)
    unknown = sorted(set(value) - {"keyAttributes", "attributes"})
    if unknown:
        message = f"{name} takes keyAttributes and attributes only, not {', '.join(unknown)}"
        raise ConfigurationError(message)
    keys = _strings(f"{name} keyAttributes", value.get("keyAttributes"), 32, 512)
    attributes = _strings(f"{name} attributes", value.get("attributes") or {}, 256, 512)
    if not 2 <= len(keys) <= 4 or set(keys) - set(KEY_NAMES):
        message = (
            f"{name} keyAttributes must hold 2 to 4 of {', '.join(KEY_NAMES)}, not "
            f"{', '.join(keys) or 'none'}"
        )
        raise ConfigurationError(message)
    if len(attributes) > 10:
        message = f"{name} attributes may hold at most 10 entries, not {len(attributes)}"
        raise ConfigurationError(message)
    entity = {"keyAttributes": keys}
    if attributes:
        entity["attributes"] = attributes
    return entity


def _strings(name: str, value: object, key_max: int, value_max: int) -> dict[str, str]:
    if not isinstance(value, Mapping):
        message = f"{name} must be a mapping of strings, not {type(value).__name__}"
        raise ConfigurationError(message)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            message = f"{name}: {key!r} must map a string to a string"
            raise ConfigurationError(message)
        if not 1 <= len(key) <= key_max or not 1 <= len(item) <= value_max:
            message = (
                f"{name}: {key!r} must be 1 to {key_max} characters, its value 1 to {value_max}"
            )
            raise ConfigurationError(message)
        result[key] = item
    return result


def detect(
    environ: Mapping[str, str] | None = None, timeout: float = ENTITY_TIMEOUT
) -> dict[str, dict[str, str]] | None:
    """Build the entity of the service this process runs as, or None if nothing says.

    In this order: Lambda (``AWS_LAMBDA_FUNCTION_NAME``), ECS (task metadata at
    ``ECS_CONTAINER_METADATA_URI_V4``), Kubernetes (``KUBERNETES_SERVICE_HOST``), EC2
    (instance metadata, unless ``AWS_EC2_METADATA_DISABLED``). ``OTEL_SERVICE_NAME``, when
    set, names the service; ``OTEL_RESOURCE_ATTRIBUTES``' ``deployment.environment`` sets the
    environment. Never raises: a platform whose metadata cannot be read within ``timeout``
    seconds per request gives nothing.
    """
    env = os.environ if environ is None else environ
    resource = _otel_resource(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    service = env.get("OTEL_SERVICE_NAME") or resource.get("service.name")
    environment = resource.get("deployment.environment.name") or resource.get(
        "deployment.environment"
    )
    for build in (_lambda, _ecs, _kubernetes, _ec2):
        try:
            found = build(env, timeout)
        except Exception:  # a platform we cannot read says nothing
            found = None
        if found is not None:
            name, where, attributes = found
            keys = {
                "Type": "Service",
                "Name": service or name,
                "Environment": environment or where,
            }
            return {"keyAttributes": keys, "attributes": attributes}
    if service and environment:
        return {"keyAttributes": {"Type": "Service", "Name": service, "Environment": environment}}
    return None


_Found = tuple[str, str, dict[str, str]]


def _otel_resource(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(","))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and value.strip()}


def _lambda(env: Mapping[str, str], timeout: float) -> _Found | None:
    function = env.get("AWS_LAMBDA_FUNCTION_NAME")
    if not function:
        return None
    return function, "lambda:default", {}


def _get_json(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
    with _DIRECT.open(request, timeout=timeout) as answer:
        return json.loads(answer.read(1 << 20))


def _ecs(env: Mapping[str, str], timeout: float) -> _Found | None:
    base = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base or not base.startswith("http"):
        return None
    task = _get_json(f"{base.rstrip('/')}/task", timeout)
    cluster = str(task.get("Cluster", "")).rpartition("/")[2]
    family = str(task.get("Family", ""))
    service = str(task.get("ServiceName") or family)
    if not cluster or not service:
        return None
    attributes = {"PlatformType": "AWS::ECS"}
    return service, f"ecs:{cluster}", attributes


def _kubernetes(env: Mapping[str, str], timeout: float) -> _Found | None:
    if not env.get("KUBERNETES_SERVICE_HOST"):
        return None
    namespace = env.get("POD_NAMESPACE") or env.get("K8S_NAMESPACE") or _read(_SA_NAMESPACE)
    pod = env.get("POD_NAME") or env.get("HOSTNAME", "")
    cluster = env.get("K8S_CLUSTER_NAME") or env.get("CLUSTER_NAME") or ""
    node = env.get("NODE_NAME") or env.get("K8S_NODE_NAME")
    workload = _POD_SUFFIX.sub("", pod) if pod else ""
    if not namespace or not workload:
        return None
    attributes = {"K8s.Namespace": namespace, "K8s.Workload": workload}
    if cluster:
        attributes.update({"PlatformType": "AWS::EKS", "EKS.Cluster": cluster})
        where = f"eks:{cluster}/{namespace}"
    else:
        attributes["PlatformType"] = "K8s"
        where = f"k8s:{namespace}"
    if node:
        attributes["K8s.Node"] = node
    if pod:
        attributes["K8s.Pod"] = pod
    return workload, where, attributes


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(256).strip()
    except OSError:
        return ""


def _ec2(env: Mapping[str, str], timeout: float) -> _Found | None:
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", _IMDS).rstrip("/")
    put = urllib.request.Request(  # noqa: S310
        f"{base}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with _DIRECT.open(put, timeout=timeout) as answer:
        token = answer.read(256).decode()
    document = _get_json(
        f"{base}/latest/dynamic/instance-identity/document",
        timeout,
        {"X-aws-ec2-metadata-token": token},
    )
    instance = str(document.get("instanceId", ""))
    if not instance:
        return None
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return (
        program or "python",
        "ec2:default",
        {"PlatformType": "AWS::EC2", "EC2.InstanceId": instance},
    )
