"""Helpers shared by every test suite: free ports, waiting for conditions, real engines and raw workers."""

from .engine_process import EngineProcess
from .net import free_port
from .raw_worker import RawWorker
from .streams import next_message, raw_unary, raw_unary_stream
from .waiting import wait_for, wait_for_async

__all__ = [
    "EngineProcess",
    "RawWorker",
    "free_port",
    "next_message",
    "raw_unary",
    "raw_unary_stream",
    "wait_for",
    "wait_for_async",
]
