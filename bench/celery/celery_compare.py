"""The same no-op workload through Celery 5 (Redis broker and result backend) and through
jobwarden, in one run, and jobwarden's ratio to Celery in both fair pairings.

    .venv/bin/python bench/celery/celery_compare.py --jobs 20000 --rounds 2

Celery: one worker, prefork pool at concurrency 2 (``--pool threads --concurrency 8`` for a thread
pool; ``--pool prefork --pool threads`` runs each), tasks sent one ``apply_async`` each (Celery
has no batch send), end to end until every result is in the backend (``ResultSet.join_native``).
jobwarden: ``jobwarden bench throughput`` with the same number of jobs (an engine on SQLite with
synchronous=FULL, 2 worker processes of capacity 100), twice: one ``SubmitJob`` per job with 64 in
flight, and ``SubmitJobs`` batches of 1000.

Two pairings, each from the same round:

- one per call: jobwarden's one SubmitJob per job against Celery's one apply_async per task (the
  first pool given);
- batched against Celery's best: jobwarden's batches against the fastest Celery pool of the round
  (Celery has no batched send, so one apply_async per task is its best way in).

Each round runs Celery, then both jobwarden runs, so all see the same machine. Without Redis at
127.0.0.1:6379 it says so and exits 0 (a skip).

``--chains N`` measures Celery chains instead (N chains of ``--length`` no-op tasks, each task
started when the one before it finished, as a linear workflow's steps are), against ``jobwarden
bench workflow``; with ``--celery-only`` it runs the Celery side alone (``jobwarden bench workflow``
calls it so to measure both in one run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def celery_worker(*, redis_url: str, pool: str, concurrency: int) -> Iterator[tuple[Any, str]]:
    """A Celery worker of its own queue, answering pings; yields the task module and the queue,
    and stops the worker (and purges the queue) after."""
    queue = f"jw-compare-{secrets.token_hex(4)}"
    env = _celery_env(redis_url, queue)
    os.environ.update({"JW_CELERY_REDIS": redis_url, "JW_CELERY_QUEUE": queue})
    sys.path.insert(0, str(HERE))
    import _celery_app  # the task module, with this run's queue

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
        yield _celery_app, queue
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        _celery_app.app.control.purge()


def run_celery(jobs: int, *, redis_url: str, pool: str, concurrency: int) -> dict[str, Any]:
    """Start a Celery worker, send ``jobs`` no-op tasks, wait for every result; the figures."""
    from celery.result import ResultSet

    with celery_worker(redis_url=redis_url, pool=pool, concurrency=concurrency) as (tasks, queue):
        started = time.time()
        results = [tasks.noop.apply_async(queue=queue) for _ in range(jobs)]
        sent = time.time()
        ResultSet(results).join_native(timeout=600, interval=0.02)
        finished = time.time()
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
    from celery import chain
    from celery.result import ResultSet

    with celery_worker(redis_url=redis_url, pool=pool, concurrency=concurrency) as (tasks, queue):
        noop = tasks.noop
        started = time.time()
        results = [chain(*(noop.si() for _ in range(length))).apply_async(queue=queue) for _ in range(chains)]
        ResultSet(results).join_native(timeout=600, interval=0.02)
        finished = time.time()
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


def jobwarden_bench(
    scenario: str, options: list[str], *, timeout: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """``jobwarden bench SCENARIO OPTIONS`` in a process of its own: its JSON document, and its
    measures by name."""
    command = [
        sys.executable, "-m", "jobwarden.sdk.cli", "bench", scenario, *options, "--json", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jobwarden bench {scenario} failed: {done.stderr[-2000:]}")
    document: dict[str, Any] = json.loads(done.stdout)
    return document, {m["name"]: m["value"] for m in document["measures"]}


def run_jobwarden_workflows(runs: int, length: int) -> dict[str, Any]:
    options = ["--runs", str(runs), "--steps", str(length), "--celery-chains", "0"]
    document, measures = jobwarden_bench("workflow", options, timeout=1800)
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
            args.chains,
            args.length,
            redis_url=args.redis,
            pool=(args.pool or ["prefork"])[0],
            concurrency=args.concurrency,
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


def run_jobwarden(
    jobs: int, *, workers: int, capacity: int, batch: int = 1000, inflight: int = 2
) -> dict[str, Any]:
    options = [
        "--jobs", str(jobs), "--workers", str(workers), "--capacity", str(capacity),
        "--batch", str(batch), "--inflight", str(inflight),
    ]  # fmt: skip
    document, measures = jobwarden_bench("throughput", options, timeout=900)
    return {
        "jobs": jobs,
        "batch": batch,
        "inflight": inflight,
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
    parser.add_argument(
        "--pool",
        action="append",
        choices=["prefork", "threads", "solo"],
        help="Celery pool (repeatable: each runs every round; default prefork)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker concurrency")
    parser.add_argument("--workers", type=int, default=2, help="jobwarden worker processes")
    parser.add_argument("--capacity", type=int, default=100, help="jobwarden worker capacity")
    parser.add_argument("--chains", type=int, default=0, help="compare chains of --length tasks instead")
    parser.add_argument("--length", type=int, default=10, help="tasks per chain (steps per workflow run)")
    parser.add_argument("--celery-only", action="store_true", help="with --chains: run Celery's side alone")
    parser.add_argument(
        "--inflight", type=int, default=64, help="jobwarden SubmitJob calls in flight (one per call)"
    )
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
    pools = args.pool or ["prefork"]
    rounds = []
    for index in range(args.rounds):
        celery: dict[str, dict[str, Any]] = {}
        for pool in pools:
            print(f"round {index + 1}/{args.rounds}: Celery ({pool}, concurrency {args.concurrency}) ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            celery[pool] = run_celery(
                args.jobs, redis_url=args.redis, pool=pool, concurrency=args.concurrency
            )
        print(f"round {index + 1}/{args.rounds}: jobwarden, one SubmitJob per job ...", file=sys.stderr,
              flush=True)  # fmt: skip
        single = run_jobwarden(
            args.jobs, workers=args.workers, capacity=args.capacity, batch=1, inflight=args.inflight
        )
        print(f"round {index + 1}/{args.rounds}: jobwarden, SubmitJobs of 1000 ...", file=sys.stderr,
              flush=True)  # fmt: skip
        batched = run_jobwarden(args.jobs, workers=args.workers, capacity=args.capacity)
        first = celery[pools[0]]
        best_pool = max(celery, key=lambda p: celery[p]["end_to_end"])
        best = celery[best_pool]
        rounds.append(
            {
                "celery": celery,
                "celery_best_pool": best_pool,
                "jobwarden_one_per_call": single,
                "jobwarden_batched": batched,
                "ratio_one_per_call": single["end_to_end"] / first["end_to_end"],
                "ratio_batched_vs_best": batched["end_to_end"] / best["end_to_end"],
            }
        )
    one_per_call = statistics.median(r["ratio_one_per_call"] for r in rounds)
    batched_ratio = statistics.median(r["ratio_batched_vs_best"] for r in rounds)
    if args.json:
        print(json.dumps({"rounds": rounds, "median_ratio_one_per_call": one_per_call,
                          "median_ratio_batched_vs_best": batched_ratio}, indent=2))  # fmt: skip
        return 0
    conditions = rounds[0]["jobwarden_batched"]["conditions"]
    print(
        f"{args.jobs:,} no-op jobs with results; {conditions['cores']} cores ({conditions['cpu']}); "
        f"load {conditions['load_average']}; Python {conditions['python']}"
    )
    print(
        f"Celery: Redis broker + result backend, 1 worker, {'/'.join(pools)} pool, "
        f"concurrency {args.concurrency}, one apply_async per task"
    )
    print(
        f"jobwarden: SQLite synchronous=FULL, {args.workers} workers x capacity {args.capacity}; "
        f"one SubmitJob per job ({args.inflight} in flight), and SubmitJobs of 1000"
    )
    print(f"{'round':>5}  {'system':<28} {'end to end':>14} {'enqueue/submit':>16} {'ratio':>7}")
    for index, r in enumerate(rounds, 1):
        lines = [(f"celery {pool}", figures, "") for pool, figures in r["celery"].items()]
        lines.append(
            ("jobwarden one per call", r["jobwarden_one_per_call"], f"{r['ratio_one_per_call']:.1f}x")
        )
        lines.append(("jobwarden batched", r["jobwarden_batched"], f"{r['ratio_batched_vs_best']:.1f}x"))
        for name, figures, ratio_text in lines:
            print(
                f"{index:>5}  {name:<28} {figures['end_to_end']:>9,.0f} /s {figures['enqueue']:>11,.0f} /s"
                f" {ratio_text:>7}"
            )
    print(f"one per call, jobwarden / Celery {pools[0]} (median of {len(rounds)}): {one_per_call:.1f}x")
    print(f"batched jobwarden / Celery's best pool (median of {len(rounds)}): {batched_ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
