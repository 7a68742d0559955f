"""Hand-framed ``WatchJobsResponse`` bytes, so one event is encoded once for every watcher.

A ``WatchJobsResponse`` is ``repeated JobEvent events = 1``, ``int64 head_sequence = 2`` and
``repeated WorkflowEvent workflow_events = 3``: on the wire, each job event is the tag byte 0x0A, its
length as a varint and its bytes; the head is the tag byte 0x10 and a varint; each workflow event is
the tag byte 0x1A, its length and its bytes.
Concatenating those is a valid message, byte for byte what ``SerializeToString``
would give, without building or copying a message per watcher.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobwarden.server.core import Event, EventBatch, WorkflowEvent

from .convert import event_to_proto
from .workflow_convert import workflow_event_to_proto

__all__ = ["encode_event", "frame_batch", "frame_events", "frame_workflow_events", "head_field", "varint"]

_EVENTS_TAG = b"\x0a"
_HEAD_TAG = b"\x10"
_WORKFLOW_EVENTS_TAG = b"\x1a"


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_event(ev: Event) -> bytes:
    """The event's ``JobEvent`` bytes, cached on the event."""
    if ev.encoded is None:
        ev.encoded = event_to_proto(ev).SerializeToString()
    return ev.encoded


def frame_events(events: Iterable[Event]) -> bytes:
    parts = []
    for ev in events:
        data = encode_event(ev)
        parts.append(_EVENTS_TAG + varint(len(data)) + data)
    return b"".join(parts)


def frame_workflow_events(events: Iterable[WorkflowEvent]) -> bytes:
    parts = []
    for ev in events:
        if ev.encoded is None:
            ev.encoded = workflow_event_to_proto(ev).SerializeToString()
        parts.append(_WORKFLOW_EVENTS_TAG + varint(len(ev.encoded)) + ev.encoded)
    return b"".join(parts)


def frame_batch(batch: EventBatch) -> bytes:
    """A committed batch framed once, shared by every watcher that receives this batch object."""
    if batch.encoded is None:
        batch.encoded = frame_events(batch.events)
        if batch.workflow_events:
            batch.encoded += frame_workflow_events(batch.workflow_events)
    return batch.encoded


def head_field(head: int) -> bytes:
    return _HEAD_TAG + varint(head) if head else b""
