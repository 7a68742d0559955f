"""Lock templates an executor declares (``Executor.locks``), added to its action's configuration on
the engine through a client of its own."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from jobwarden.sdk._exceptions import JobNotFound, JobwardenError
from jobwarden.sdk._hosting import Hosted
from jobwarden.sdk._requests import lock_request
from jobwarden.v1 import job_pb2

__all__ = ["declare_locks"]

logger = logging.getLogger("jobwarden.worker")


async def declare_locks(address: str | Sequence[str], hosted: Iterable[Hosted], *, worker_name: str) -> None:
    """Add each executor's lock templates to its action's configuration, keeping those it has."""
    from jobwarden.sdk._client import JobClient

    wanted = {each.action: each.executor.locks for each in hosted if each.executor.locks}
    if not wanted:
        return
    async with JobClient(address) as client:
        for action, templates in wanted.items():
            try:
                try:
                    config = await client.get_action_config(action)
                except JobNotFound:
                    config = job_pb2.ActionConfig(action=action)
                have = {(lock.resource, lock.mode) for lock in config.lock_templates}
                missing = [
                    lock for lock in map(lock_request, templates) if (lock.resource, lock.mode) not in have
                ]
                if missing:
                    config.lock_templates.extend(missing)
                    await client.set_action_config(config)
                    logger.info(
                        "worker %s: action %s now takes locks %s",
                        worker_name,
                        action,
                        ", ".join(lock.resource for lock in config.lock_templates),
                    )
            except JobwardenError as error:
                logger.warning("worker %s: could not declare the locks of %s: %s", worker_name, action, error)
