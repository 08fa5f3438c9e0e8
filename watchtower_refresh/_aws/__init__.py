"""Everything the handler knows about AWS, below the handler and above nothing of ours.

- ``credentials``: sessions sharing botocore's data loader, credentials that refresh
  themselves (an assumed role with windows sized to its lifetime), regions, STS endpoints
  and request timeouts.
- ``destination``: the handler's ``logs`` client, the set-up of its group (with its KMS
  key, class and deletion protection) and streams, shared with ``watchtower-refresh
  check``, and the entity sent with every put.
- ``entity``: the ``entity`` option checked, or built from ECS, Kubernetes, Lambda or EC2.
- ``model``: what the installed botocore's model of CloudWatch Logs accepts.
- ``iam``: the one table of the AWS actions each handler option makes it call, and the
  IAM documents printed from it by ``watchtower-refresh policy``.
- ``wire``: PutLogEvents with a request body built with the standard library.
- ``failures``: what an AWS error code means for a batch, and the sentence that says so.

Dependencies point down this list from ``destination``: it uses ``credentials``,
``entity`` and ``failures``, which uses ``iam``; ``model`` and ``wire`` stand alone. Two
modules renew a lock in a forked child, each with its own ``after_fork_in_child``
registered with the process layer's ``at_fork``.
"""

from __future__ import annotations

from .credentials import (
    GLOBAL_STS_HOST,
    Clock,
    SessionOptions,
    effective_region,
    refresh_windows,
    refreshable_session,
    regional_sts_client,
)
from .destination import Destination, Prepared, Settings, set_up
from .failures import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    DENIED_CODES,
    EXPIRED_CODES,
    MAX_QUICK_RETRIES,
    UNRECOGNISED_CODES,
    Outcome,
    advice,
    classify,
    error_code,
    is_throttling,
    permission_hint,
)
from .iam import TRUSTED_SERVICES, caller_policy, permissions_policy, trust_policy
from .wire import put_events

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DENIED_CODES",
    "EXPIRED_CODES",
    "GLOBAL_STS_HOST",
    "MAX_QUICK_RETRIES",
    "TRUSTED_SERVICES",
    "UNRECOGNISED_CODES",
    "Clock",
    "Destination",
    "Outcome",
    "Prepared",
    "SessionOptions",
    "Settings",
    "advice",
    "caller_policy",
    "classify",
    "effective_region",
    "error_code",
    "is_throttling",
    "permission_hint",
    "permissions_policy",
    "put_events",
    "refresh_windows",
    "refreshable_session",
    "regional_sts_client",
    "set_up",
    "trust_policy",
]
