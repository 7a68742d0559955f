"""The Celery side of ``celery_compare.py``: one no-op task, its result stored in Redis.

The broker/backend URL and the queue come from the environment so each comparison run has a queue
of its own: ``JW_CELERY_REDIS`` (default ``redis://127.0.0.1:6379/15``), ``JW_CELERY_QUEUE``.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("JW_CELERY_REDIS", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("JW_CELERY_QUEUE", "jw-compare")

app = Celery("jw_compare", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=False,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="jw_compare.noop")
def noop() -> None:
    """Does nothing, like the bench's no-op executor; its result (None) is still stored."""
    return None
