"""In Kubernetes each replica's audit trail outlives its pod: a file per pod on a volume every replica mounts."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import yaml

from vps_snapshots_mcp.settings import environment_variables

KUBERNETES = Path(__file__).parent.parent / "manifests" / "kubernetes"


def manifest(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((KUBERNETES / name).read_text()))


def test_each_replica_writes_its_own_trail_on_a_shared_persistent_volume() -> None:
    deployment = manifest("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    names = [entry["name"] for entry in container["env"]]
    env = {entry["name"]: entry for entry in container["env"]}
    assert "VPS_MCP_AUDIT_LOG" in environment_variables()

    # The file is named by the pod (the downward API), defined before the variable that expands it.
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert names.index("POD_NAME") < names.index("VPS_MCP_AUDIT_LOG")
    audit_log = PurePosixPath(env["VPS_MCP_AUDIT_LOG"]["value"])
    assert audit_log.name == "$(POD_NAME).jsonl"

    # ... in a directory mounted from a claim every replica can write, which is not the pod's own storage.
    [mount] = [m for m in container["volumeMounts"] if audit_log.is_relative_to(m["mountPath"])]
    assert audit_log.parent == PurePosixPath(mount["mountPath"]) and not mount.get("readOnly", False)
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = manifest("audit-volume.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the replicas run on any node, at once
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    kubernetes_validate.validate(claim, kubernetes_validate.latest_version(), strict=True)
