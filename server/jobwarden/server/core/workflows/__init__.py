"""Workflows: definitions of steps joined by edges, work orders and their runs (issue 12).

Modules: ``definitions`` (the definition and its graph), ``expressions`` (CEL conditions and
templates), ``checks`` (the checks on put, and the compiled form), ``runs`` (work orders, runs, steps,
workflow events), ``machine`` (how a run advances: pure decisions) and ``rows`` (store rows). They
use only the core's values (model, errors, validation, ids), so the store seam, the writer and the
event bus use them without an import cycle. The part that runs workflows, ``WorkflowRunner``, is
``core/workflow_runner.py``, beside the engine's other parts. Nothing here imports grpc.
"""
