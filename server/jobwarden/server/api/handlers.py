"""JobService's method handlers, built from its descriptor, with WatchJobs passing its bytes through.

The generated ``add_JobServiceServicer_to_server`` serializes every response; ``WatchJobs`` yields
responses it framed itself (``wire``), once for all watchers, so its serializer is the identity.
"""

from __future__ import annotations

from typing import Any

import grpc
from jobwarden.v1 import job_service_pb2

from .job_service import JobService

__all__ = ["PASS_THROUGH", "job_service_handler"]

#: methods whose handler returns response bytes already serialized
PASS_THROUGH = frozenset({"WatchJobs"})

_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]


def _identity(data: bytes) -> bytes:
    return data


def job_service_handler(servicer: JobService) -> grpc.GenericRpcHandler:
    handlers: dict[str, Any] = {}
    for method in _SERVICE.methods:
        request_class = getattr(job_service_pb2, method.input_type.name)
        response_class = getattr(job_service_pb2, method.output_type.name)
        serializer = _identity if method.name in PASS_THROUGH else response_class.SerializeToString
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
            response_serializer=serializer,
        )
    return grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers)
