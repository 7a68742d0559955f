"""``jobwarden locks list|release``: the lock table, and an admin's way out of a lock held by a job
whose executor has not stopped.

Registered through the ``jobwarden.commands`` entry point ``locks``. Exit codes: 0 done, 1 the engine
refused (its reason is printed) or could not be reached, 2 the command line is wrong.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobwarden.sdk import _format as fmt
from jobwarden.sdk._cli_support import OK, UsageError, client_for, command_group, print_json, print_table

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``jobwarden locks`` and its sub-commands."""
    add = command_group(
        subparsers,
        "locks",
        help="show the lock table; force-release the locks of a job whose executor has not stopped",
        description="The lock table: holders and waiters per resource.",
    )

    listing = add("list", _list, "Holders and waiters of each locked resource.")
    listing.add_argument("--prefix", default="", help="only resources starting with this")
    release = add(
        "release",
        _release,
        "Admin only: end a job whose worker was told to stop it (execution timeout or cancel) but has "
        "not confirmed that its executor stopped, with the outcome decided then (KILLED or CANCELLED), "
        "so its locks pass on now. Only when you know its code no longer touches the resources.",
    )
    release.add_argument("--job", required=True, metavar="JOB_ID", help="the stopping job")
    release.add_argument("--reason", required=True, help="why (kept in the job's events with your name)")


async def _list(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        resources = await client.locks(args.prefix)
    if args.json:
        print_json([fmt.message_json(r) for r in resources])
        return OK
    rows = []
    for resource in resources:
        entries = [("holder", h) for h in resource.holders]
        entries += [(f"waiter {n}", w) for n, w in enumerate(resource.waiters, 1)]
        for role, entry in entries:
            who = f"job {entry.job_id}" if entry.job_id else f"{entry.holder} (external)"
            rows.append(
                [
                    resource.resource,
                    role,
                    fmt.lock_mode_name(entry.mode),
                    who,
                    fmt.ago(entry.since),
                    entry.holder_note,
                ]
            )
    print_table(["RESOURCE", "ROLE", "MODE", "HOLDER", "SINCE", "NOTE"], rows, empty="no locks held")
    return OK


async def _release(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    async with client_for(args) as client:
        response = await client.force_release_job_locks(args.job, args.reason)
    if args.json:
        print_json(fmt.message_json(response))
        return OK
    job = response.job
    print(
        f"{job.id}  {fmt.status_name(job.status)}  {response.released} lock(s) released: {job.status_reason}"
    )
    return OK
