"""The same no-op workload through Celery 5 (Redis broker and result backend) and through
jobwarden, in one run, and jobwarden's ratio to Celery.

    .venv/bin/python bench/celery/celery_compare.py --jobs 20000 --rounds 2

Celery: one worker, prefork pool at concurrency 2 (``--pool threads --concurrency 8`` for a thread
pool), tasks sent one ``apply_async`` each (Celery has no batch send), end to end until every
result is in the backend (``ResultSet.join_native``). jobwarden: ``jobwarden bench throughput``
with the same number of jobs (an engine on SQLite with synchronous=FULL, 2 worker processes of
capacity 100, SubmitJobs batches of 1000). The rounds alternate Celery and jobwarden so both see the
same machine. Without Redis at 127.0.0.1:6379 it says so and exits 0 (a skip).

``--chains N`` measures Celery chains instead (N chains of ``--length`` no-op tasks, each task
started when the one before it finished, as a linear workflow's steps are), against ``jobwarden
bench workflow``; with ``--celery-only`` it runs the Celery side alone (``jobwarden bench workflow``
calls it so to measure both in one run).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def redis_problem(host: str, port: int) -> str | None:
    """Why Redis cannot be used, or None when it answers PING."""
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError as error:
        return f"Redis is not reachable at {host}:{port} ({error})"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {host}:{port} did not answer PING: {reply!r}"
    return None


def _celery_env(redis_url: str, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "JW_CELERY_REDIS": redis_url,
        "JW_CELERY_QUEUE": queue,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def run_celery(jobs: int, *, redis_url: str, pool: str, concurrency: int) -> dict[str, Any]:
    """Start a Celery worker, send ``jobs`` no-op tasks, wait for every result; the figures."""
    queue = f"jw-compare-{secrets.token_hex(4)}"
    env = _celery_env(redis_url, queue)
    os.environ.update({"JW_CELERY_REDIS": redis_url, "JW_CELERY_QUEUE": queue})
    sys.path.insert(0, str(HERE))
    import _celery_app  # the task module, with this run's queue
    from celery.result import ResultSet

    _celery_app.app.conf.task_default_queue = queue
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "_celery_app", "worker", "--pool", pool,
         "--concurrency", str(concurrency), "--queues", queue, "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _celery_app.app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                stderr = worker.stderr.read().decode() if worker.stderr else ""
                raise RuntimeError(f"the Celery worker did not start: {stderr[-1500:]}")
        noop = _celery_app.noop
        started = time.time()
        results = [noop.apply_async(queue=queue) for _ in range(jobs)]
        sent = time.time()
        ResultSet(results).join_native(timeout=600, interval=0.02)
        finished = time.time()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        _celery_app.app.control.purge()
    return {
        "jobs": jobs,
        "end_to_end": jobs / (finished - started),
        "enqueue": jobs / (sent - started),
        "seconds": finished - started,
    }


def run_celery_chains(
    chains: int, length: int, *, redis_url: str, pool: str, concurrency: int
) -> dict[str, Any]:
    """Start a Celery worker, send ``chains`` chains of ``length`` no-op tasks, wait for the last
    result of each; the figures."""
    queue = f"jw-compare-{secrets.token_hex(4)}"
    env = _celery_env(redis_url, queue)
    os.environ.update({"JW_CELERY_REDIS": redis_url, "JW_CELERY_QUEUE": queue})
    sys.path.insert(0, str(HERE))
    import _celery_app
    from celery import chain
    from celery.result import ResultSet

    _celery_app.app.conf.task_default_queue = queue
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "_celery_app", "worker", "--pool", pool,
         "--concurrency", str(concurrency), "--queues", queue, "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _celery_app.app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                stderr = worker.stderr.read().decode() if worker.stderr else ""
                raise RuntimeError(f"the Celery worker did not start: {stderr[-1500:]}")
        noop = _celery_app.noop
        started = time.time()
        results = [chain(*(noop.si() for _ in range(length))).apply_async(queue=queue) for _ in range(chains)]
        ResultSet(results).join_native(timeout=600, interval=0.02)
        finished = time.time()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        _celery_app.app.control.purge()
    seconds = finished - started
    return {
        "chains": chains,
        "length": length,
        "chains_per_second": chains / seconds,
        "tasks_per_second": chains * length / seconds,
        "seconds": seconds,
        "pool": pool,
        "concurrency": concurrency,
    }


def run_jobwarden_workflows(runs: int, length: int) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "jobwarden.sdk.cli", "bench", "workflow", "--runs", str(runs),
        "--steps", str(length), "--celery-chains", "0", "--json", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jobwarden bench workflow failed: {done.stderr[-2000:]}")
    document = json.loads(done.stdout)
    measures = {m["name"]: m["value"] for m in document["measures"]}
    return {
        "runs": runs,
        "runs_per_second": measures["linear runs"],
        "steps_per_second": measures["linear steps"],
        "conditions": document["conditions"],
    }


def chains_main(args: argparse.Namespace) -> int:
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: Celery chains ...", file=sys.stderr, flush=True)
        celery = run_celery_chains(
            args.chains, args.length, redis_url=args.redis, pool=args.pool, concurrency=args.concurrency
        )
        if args.celery_only:
            rounds.append({"celery": celery})
            continue
        print(f"round {index + 1}/{args.rounds}: jobwarden workflows ...", file=sys.stderr, flush=True)
        jobwarden = run_jobwarden_workflows(args.chains, args.length)
        ratio = jobwarden["runs_per_second"] / celery["chains_per_second"]
        rounds.append({"celery": celery, "jobwarden": jobwarden, "ratio": ratio})
    if args.json:
        document: dict[str, Any] = {"rounds": rounds}
        if not args.celery_only:
            document["median_ratio"] = statistics.median(r["ratio"] for r in rounds)
        print(json.dumps(document, indent=2))
        return 0
    for index, r in enumerate(rounds, 1):
        line = f"round {index}: Celery {r['celery']['chains_per_second']:,.1f} chains/s of {args.length}"
        if "jobwarden" in r:
            line += f"; jobwarden {r['jobwarden']['runs_per_second']:,.1f} runs/s ({r['ratio']:.1f}x)"
        print(line)
    return 0


def run_jobwarden(jobs: int, *, workers: int, capacity: int) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "jobwarden.sdk.cli", "bench", "throughput", "--jobs", str(jobs),
        "--workers", str(workers), "--capacity", str(capacity), "--json", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jobwarden bench throughput failed: {done.stderr[-2000:]}")
    document = json.loads(done.stdout)
    measures = {m["name"]: m["value"] for m in document["measures"]}
    return {
        "jobs": jobs,
        "end_to_end": measures["end to end"],
        "enqueue": measures["submits accepted"],
        "seconds": document["details"]["seconds"],
        "engine_cpu_percent": measures.get("engine CPU"),
        "conditions": document["conditions"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per system per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each Celery then jobwarden")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="broker and result backend")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker concurrency")
    parser.add_argument("--workers", type=int, default=2, help="jobwarden worker processes")
    parser.add_argument("--capacity", type=int, default=100, help="jobwarden worker capacity")
    parser.add_argument("--chains", type=int, default=0, help="compare chains of --length tasks instead")
    parser.add_argument("--length", type=int, default=10, help="tasks per chain (steps per workflow run)")
    parser.add_argument("--celery-only", action="store_true", help="with --chains: run Celery's side alone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs <= 0 or args.rounds <= 0:
        parser.error("--jobs and --rounds must be positive")
    host_port = args.redis.split("//", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if (problem := redis_problem(host or "127.0.0.1", int(port or 6379))) is not None:
        print(f"celery_compare: skipped: {problem}", file=sys.stderr)
        if args.json:
            print(json.dumps({"skipped": problem}))
        return 0
    if args.chains > 0:
        if args.length <= 0:
            parser.error("--length must be positive")
        return chains_main(args)
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: Celery ({args.pool}, concurrency {args.concurrency}) ...",
              file=sys.stderr, flush=True)  # fmt: skip
        celery = run_celery(args.jobs, redis_url=args.redis, pool=args.pool, concurrency=args.concurrency)
        print(f"round {index + 1}/{args.rounds}: jobwarden ...", file=sys.stderr, flush=True)
        jobwarden = run_jobwarden(args.jobs, workers=args.workers, capacity=args.capacity)
        rounds.append(
            {
                "celery": celery,
                "jobwarden": jobwarden,
                "ratio": jobwarden["end_to_end"] / celery["end_to_end"],
            }
        )
    ratio = statistics.median(r["ratio"] for r in rounds)
    if args.json:
        print(json.dumps({"rounds": rounds, "median_ratio": ratio}, indent=2))
        return 0
    conditions = rounds[0]["jobwarden"]["conditions"]
    print(
        f"{args.jobs:,} no-op jobs with results; {conditions['cores']} cores ({conditions['cpu']}); "
        f"load {conditions['load_average']}; Python {conditions['python']}"
    )
    print(
        f"Celery: Redis broker + result backend, 1 worker, {args.pool} pool, concurrency {args.concurrency}"
    )
    print(f"jobwarden: SQLite synchronous=FULL, {args.workers} workers x capacity {args.capacity}")
    print(f"{'round':>5}  {'system':<10} {'end to end':>14} {'enqueue/submit':>16} {'ratio':>7}")
    for index, r in enumerate(rounds, 1):
        for name in ("celery", "jobwarden"):
            figures = r[name]
            ratio_text = f"{r['ratio']:.1f}x" if name == "jobwarden" else ""
            print(
                f"{index:>5}  {name:<10} {figures['end_to_end']:>9,.0f} /s {figures['enqueue']:>11,.0f} /s"
                f" {ratio_text:>7}"
            )
    print(f"jobwarden / Celery, end to end (median of {len(rounds)}): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
