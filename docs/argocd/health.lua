-- Argo CD health check for tensorgate.dev/ModelDeployment (argocd-cm:
-- resource.customizations.health.tensorgate.dev_ModelDeployment). Maps the operator's
-- status (phase, conditions Ready/Progressing/Degraded, observedGeneration) to an Argo CD
-- health status; the table is in docs/argocd/README.md and tests/unit/test_argocd_health.py
-- runs this file with a real Lua runtime over statuses produced by the rollout engine.
local hs = {}

local IN_FLIGHT = {
  Pending = true, Deploying = true, SmokeTesting = true,
  Evaluating = true, Progressing = true, Promoting = true,
}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return tostring(value)
end

-- The spec names the model the stable track already runs (e.g. a reverted Git commit).
local function spec_is_stable(spec, status)
  local stable = status.stableModel
  local model = spec ~= nil and spec.model or nil
  if stable == nil or model == nil then
    return false
  end
  return tostring(model.version) == tostring(stable.version)
    and model.name == stable.name and model.uri == stable.uri
end

local function health(o)
  local status = o.status
  if status == nil or status.phase == nil then
    return "Progressing", "waiting for the TensorGate operator to observe the resource"
  end
  local generation = o.metadata ~= nil and o.metadata.generation or nil
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Progressing", "generation " .. tostring(generation)
      .. " not yet observed by the operator (observed " .. text(observed, "none") .. ")"
  end

  local phase = status.phase
  local message = text(status.message, phase)
  local ready = condition(status, "Ready")
  local progressing = condition(status, "Progressing")
  local degraded = condition(status, "Degraded")

  if phase == "Failed" then
    return "Degraded", text(degraded ~= nil and is_true(degraded) and degraded.message or nil,
      message)
  end
  if phase == "Paused" then
    return "Suspended", message .. " (run `kubectl tensorgate promote` or `abort`)"
  end
  if IN_FLIGHT[phase] then
    if progressing ~= nil and progressing.reason == "Paused" then
      return "Suspended", message .. " (spec.paused is true)"
    end
    if progressing ~= nil and progressing.reason == "WaitingForConfirmation" then
      return "Suspended", message
        .. " (a confirm-promotion webhook holds it: release it, or `kubectl tensorgate promote` or `abort`)"
    end
    local weight = status.canaryWeight
    if status.canaryVersion ~= nil and weight ~= nil then
      return "Progressing", phase .. ": canary " .. tostring(status.canaryVersion)
        .. " at " .. tostring(weight) .. "%: " .. message
    end
    return "Progressing", phase .. ": " .. message
  end
  if phase == "RolledBack" then
    if is_true(ready) and spec_is_stable(o.spec, status) then
      return "Healthy", "spec is back at stable " .. text(status.stableVersion, "?")
        .. " after a rollback: " .. message
    end
    local why = degraded ~= nil and is_true(degraded)
      and (text(degraded.reason, "") .. ": " .. text(degraded.message, "")) or message
    local serving = "stable " .. text(status.stableVersion, "?") .. " serving"
    if not is_true(ready) then
      serving = text(ready ~= nil and ready.message or nil, "stable not ready")
    end
    return "Degraded", "rolled back " .. text(status.canaryVersion, "the candidate") .. " ("
      .. why .. "); " .. serving
  end
  if phase == "Promoted" then
    if is_true(ready) then
      return "Healthy", message
    end
    if ready == nil or is_true(progressing) then
      return "Progressing", message
    end
    return "Degraded", text(ready.message, message)
  end
  return "Unknown", "unknown phase " .. tostring(phase)
end

hs.status, hs.message = health(obj)
return hs
