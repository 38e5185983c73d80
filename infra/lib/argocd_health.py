"""How Argo CD judges the platform's custom resources (argocd-cm `resource.customizations.*`), so that a sync reports
the truth: a JobSet Kueue has not admitted yet is Suspended, not Healthy; a LocalQueue whose ClusterQueue is gone is
Degraded. Argo CD v3.4 ships its own checks for KServe's InferenceService; JobSet and Kueue have none upstream."""
from __future__ import annotations

# Lua health scripts, keyed `<group>_<Kind>` as argocd-cm spells them. Each reads only status fields of the vendored
# CRDs (schemas/crds/jobset, schemas/crds/kueue); tests/test_gitops.py runs them on sample objects.
HEALTH: dict[str, str] = {
    "jobset.x-k8s.io_JobSet": """\
local hs = {status = "Progressing", message = "Waiting for the JobSet's jobs"}
if obj.status == nil then
  return hs
end
if obj.status.terminalState == "Completed" then
  return {status = "Healthy", message = "JobSet completed"}
end
if obj.status.terminalState == "Failed" then
  return {status = "Degraded", message = "JobSet failed"}
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.status == "True" and c.type == "Failed" then
      return {status = "Degraded", message = c.message or "JobSet failed"}
    end
    if c.status == "True" and c.type == "Completed" then
      return {status = "Healthy", message = c.message or "JobSet completed"}
    end
    if c.status == "True" and c.type == "Suspended" then
      return {status = "Suspended", message = "Suspended: waiting for Kueue to admit it"}
    end
  end
end
return hs
""",
    "kueue.x-k8s.io_LocalQueue": """\
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Active" and c.status == "True" then
      return {status = "Healthy", message = c.message or "Can submit new workloads"}
    end
    if c.type == "Active" and c.status == "False" then
      return {status = "Degraded", message = c.message or "LocalQueue is not active"}
    end
  end
end
return {status = "Progressing", message = "Waiting for Kueue to activate the queue"}
""",
}

# Kueue suspends every Job and JobSet of a team namespace until it admits them (spec.suspend), so Git's copy and the
# live one differ by design: each application ignores that field and keeps the live value when it syncs, or every
# queued run would show OutOfSync and a sync would fight Kueue. Set on the Applications, so both delivery paths have it.
IGNORE_DIFFERENCES: list[dict] = [
    {"group": "batch", "kind": "Job", "jsonPointers": ["/spec/suspend"]},
    {"group": "jobset.x-k8s.io", "kind": "JobSet", "jsonPointers": ["/spec/suspend"]},
]


def argocd_cm() -> dict[str, str]:
    """The argocd-cm entries for the platform's resources."""
    return {f"resource.customizations.health.{key}": script for key, script in sorted(HEALTH.items())}
