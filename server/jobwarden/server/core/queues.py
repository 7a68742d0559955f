"""Jobs ready to start, per action: urgent ones first (taken over, handed back, or already holding
their locks), then higher priority, then first come first served."""

from __future__ import annotations

import heapq

from .model import Job

__all__ = ["ReadyQueues"]


class ReadyQueues:
    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, int, int, str]]] = {}
        #: job id -> action, for every job in a queue (removal is lazy: popped entries not here are skipped)
        self._members: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._order = 0

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def push(self, job: Job, *, urgent: bool = False) -> None:
        if job.id in self._members:
            return
        self._order += 1
        job.queue_order = self._order
        heapq.heappush(
            self._heaps.setdefault(job.action, []),
            (0 if urgent else 1, -job.priority, self._order, job.id),
        )
        self._members[job.id] = job.action
        self._sizes[job.action] = self._sizes.get(job.action, 0) + 1

    def pop(self, action: str) -> str | None:
        heap = self._heaps.get(action)
        while heap:
            _, _, _, job_id = heapq.heappop(heap)
            if self._members.get(job_id) == action:
                del self._members[job_id]
                self._sizes[action] -= 1
                return job_id
        return None

    def remove(self, job_id: str) -> None:
        action = self._members.pop(job_id, None)
        if action is not None:
            self._sizes[action] -= 1
            heap = self._heaps[action]
            # Keep lazily-removed entries from piling up in a queue that is rarely popped.
            if len(heap) > 64 and len(heap) > 4 * self._sizes[action]:
                self._heaps[action] = [e for e in heap if self._members.get(e[3]) == action]
                heapq.heapify(self._heaps[action])

    def size(self, action: str) -> int:
        return self._sizes.get(action, 0)

    def actions(self) -> list[str]:
        return [action for action, size in self._sizes.items() if size > 0]
