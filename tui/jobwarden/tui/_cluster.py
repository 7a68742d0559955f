"""How the header names the engines: the leader, the epoch and the standbys (``ListEngines``)."""

from __future__ import annotations

from jobwarden.v1 import cluster_service_pb2

__all__ = ["cluster_forms", "cluster_tip"]

_ROLE = {
    cluster_service_pb2.ENGINE_ROLE_LEADER: "leader",
    cluster_service_pb2.ENGINE_ROLE_STANDBY: "standby",
    cluster_service_pb2.ENGINE_ROLE_FENCED: "fenced",
}


def cluster_forms(cluster: cluster_service_pb2.ListEnginesResponse | None, label: str) -> tuple[str, ...]:
    """The header's engine text, longest first. Without an answer (an engine from before
    ``ClusterService``, or none yet): ``label``. One engine given one address (SQLite, say):
    ``label`` and its epoch; given several, the one that leads and that no standby is left."""
    if cluster is None or not cluster.engines:
        return (label,)
    others = [engine for engine in cluster.engines if engine.engine_id != cluster.leader_id]
    epoch = cluster.epoch
    if len(cluster.engines) == 1 and cluster.leader_id and "," not in label:
        return (f"{label} · epoch {epoch}", label)
    count = len(others)
    plural = "standby" if count == 1 else "standbys"
    if not cluster.leader_id:
        return (
            f"no leader · epoch {epoch} · {count} {plural}",
            f"no leader · e{epoch} · +{count}",
            "no leader",
        )
    names = ", ".join(engine.engine_id for engine in others) or "none"
    leader = cluster.leader_address or cluster.leader_id
    return (
        f"leader {cluster.leader_id} {leader} · epoch {epoch} · {plural} {names}",
        f"leader {leader} · epoch {epoch} · {count} {plural}",
        f"L {leader} · e{epoch} · +{count}",
        f"L {leader} e{epoch} +{count}",
        f"L {leader}",
    )


def cluster_tip(cluster: cluster_service_pb2.ListEnginesResponse | None) -> str | None:
    """Every engine on a line of its own: id, address, role, epoch; the one that answered marked."""
    if cluster is None or not cluster.engines:
        return None
    lines = []
    for engine in cluster.engines:
        role = _ROLE.get(engine.role, str(engine.role))
        mark = "  (answered)" if engine.engine_id == cluster.engine_id else ""
        lines.append(f"{engine.engine_id}  {engine.address}  {role}  epoch {engine.epoch}{mark}")
    return "\n".join(lines)
