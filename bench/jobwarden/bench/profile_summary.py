"""Where the engine's time goes, from a py-spy raw profile (``jobwarden bench ... --profile FILE``,
or ``py-spy record --format raw --threads --pid PID``).

    .venv/bin/python -m jobwarden.bench.profile_summary /tmp/throughput.txt --top 25

Prints the share of samples per thread, then the functions with the most samples, both *self*
(the function itself was running) and *inclusive* (it was on the stack), as shares of every
sample. Frames are ``function (file:line)``; lines are dropped so a function counts once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\((.*?):\d+\)$")

#: areas of the engine, each named by a frame that marks it; a sample counts for the first area
#: (in this order) with a marking frame on its stack
AREAS = (
    ("store writes (writer thread: SQLAlchemy + SQLite)", ("Store.write",)),
    ("rows for the store (in the event loop)", ("_Batch.rows", "job_row (", "event_row (")),
    ("SubmitJobs (parse, validate, create, answer)", ("JobService.SubmitJobs", "JobService.SubmitJob ")),
    ("WatchJobs streams (events to protos)", ("JobService.WatchJobs",)),
    ("worker stream in (results, updates)", ("ExecutorService._read", "ExecutorService._handle")),
    ("dispatch and assignments out", ("WorkerProtocol._dispatch", "ExecutorService.Connect", "_pack (")),
    ("after-commit: publish events, acks", ("Writer._run", "EventBus.publish")),
    ("timers (APScheduler)", ("apscheduler", "Timers.")),
    ("gRPC server machinery", ("grpc/", "_server.py", "cygrpc")),
)


def _frame(text: str) -> str:
    """``Class.method (path/file.py:123)`` -> ``Class.method (path/file.py)``."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", text)


def _area(frames: list[str]) -> str:
    for area, marks in AREAS:
        if any(mark in frame for frame in frames for mark in marks):
            return area
    return "other (event loop, asyncio, bench)"


def summarize(path: Path, top: int, thread_filter: str | None) -> str:
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        name = thread.split(":", 1)[-1].strip() if ":" in thread else thread
        threads[name] += count
        if thread_filter and thread_filter not in name:
            continue
        total += count
        frames = [_frame(f) for f in frames[1:]]
        areas[_area(frames)] += count
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{path}: {sum(threads.values())} samples"]
    lines.append("samples per thread:")
    whole = sum(threads.values()) or 1
    for name, count in threads.most_common():
        lines.append(f"  {100 * count / whole:5.1f}%  {name}")
    if not total:
        return "\n".join(lines)
    scope = f" (thread {thread_filter})" if thread_filter else ""
    lines.append(f"\nareas, share of {total} samples{scope}:")
    for area, count in areas.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {area}")
    lines.append(f"\nself time, share of {total} samples{scope}:")
    for frame, count in self_time.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines.append(f"\ninclusive time, share of {total} samples{scope} (the event loop's own frames left out):")
    skipped = (
        "<module>",
        "main (",
        "run (",
        "Runner.run",
        "BaseEventLoop.",
        "_run (",
        "Handle._run",
        "Thread.",
    )
    shown = 0
    for frame, count in inclusive.most_common():
        if frame.startswith(skipped) or "threading.py" in frame:
            continue
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path, help="a py-spy raw (collapsed stacks) file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only samples of threads whose name contains this (e.g. MainThread)")
    args = parser.parse_args(argv)
    if not args.profile.exists():
        print(f"profile_summary: {args.profile} does not exist", file=sys.stderr)
        return 2
    print(summarize(args.profile, args.top, args.thread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
