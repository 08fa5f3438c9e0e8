"""What the installed botocore's model of CloudWatch Logs accepts, for options checked against it.

The handler's clients skip botocore's parameter validation (see ``destination``), and a
parameter the model does not know makes botocore's serializer fail at the first call. So
the options that map to newer parameters (``deletion_protection`` needs
``deletionProtectionEnabled``, added after botocore 1.40; the ``ESSENTIALS`` group class
likewise) are checked here, at construction, against the model that will serialize them.
"""

from __future__ import annotations

import functools

import botocore
import botocore.session
from botocore.model import ServiceModel

__all__ = [
    "CREATE_GROUP_PARAMETERS",
    "create_group_parameters",
    "log_group_classes",
    "put_parameters",
    "version",
]

CREATE_GROUP_PARAMETERS = {
    "kms_key_id": "kmsKeyId",
    "log_group_class": "logGroupClass",
    "deletion_protection": "deletionProtectionEnabled",
}
"""The handler's options and the CreateLogGroup parameters they fill."""


@functools.lru_cache(maxsize=1)
def _model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("logs")


def version() -> str:
    """The installed botocore's version, for messages."""
    return str(botocore.__version__)


def _parameters(operation: str) -> frozenset[str]:
    shape = _model().operation_model(operation).input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


def create_group_parameters() -> frozenset[str]:
    """The parameters of CreateLogGroup in the installed model."""
    return _parameters("CreateLogGroup")


def put_parameters() -> frozenset[str]:
    """The parameters of PutLogEvents in the installed model."""
    return _parameters("PutLogEvents")


def log_group_classes() -> tuple[str, ...]:
    """The values of ``logGroupClass`` the installed model knows, or none at all."""
    if "logGroupClass" not in create_group_parameters():
        return ()
    shape = _model().shape_for("LogGroupClass")
    return tuple(getattr(shape, "enum", ()))
