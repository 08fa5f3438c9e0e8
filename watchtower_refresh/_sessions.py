"""Sessions that share botocore's data loader, so each handler costs little memory.

A botocore session's loader holds the parsed service models, endpoint rules and
partitions it has read: about 11 MiB once ``logs`` and ``sts`` clients exist. Every
``boto3.Session()`` builds its own, so ten handlers cost ten times that. The loader holds
only data read from botocore's files, so one per process (per ``AWS_DATA_PATH``) serves
every session built here; credentials, profile, region and configuration stay each
session's own, and so do clients and their HTTP connections (the handler builds new
clients in a forked child).
"""

from __future__ import annotations

import os
import threading

import boto3
import botocore.session
from botocore.credentials import CredentialResolver
from botocore.loaders import Loader, create_loader

__all__ = ["new_session"]

_lock = threading.Lock()
_loaders: dict[str | None, Loader] = {}


def _reinit_lock() -> None:
    # A forked child must not inherit the lock held by a thread it does not have.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_lock)


def new_session(
    *,
    profile_name: str | None = None,
    region_name: str | None = None,
    credential_resolver: CredentialResolver | None = None,
) -> boto3.Session:
    """Return a new ``boto3.Session`` whose botocore data loader is shared in this process.

    Args:
        profile_name: Profile of the shared config files, as for ``boto3.Session``.
        region_name: Region, as for ``boto3.Session``.
        credential_resolver: Where the session's credentials come from, instead of
            botocore's default chain.

    Returns:
        A session of its own in every respect but the loader of botocore's data files.
    """
    core = botocore.session.Session(profile=profile_name)
    if credential_resolver is not None:
        core.register_component("credential_provider", credential_resolver)
    data_path = core.get_config_variable("data_path")
    with _lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = create_loader(data_path)
        core.register_component("data_loader", loader)
        session = boto3.Session(
            botocore_session=core, profile_name=profile_name, region_name=region_name
        )
        # boto3.Session appends its own data directory to the loader's search paths: with
        # one loader for all, drop the repeat so the list does not grow with every session.
        # Only the last entry goes, so a lookup iterating the list meanwhile misses nothing.
        paths = loader.search_paths
        while len(paths) > 1 and paths[-1] in paths[:-1]:
            paths.pop()
    return session
