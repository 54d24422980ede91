-- wrk script: one event per request, POST /streams/{stream} (keep-alive).
-- The streams rotate over 1000 names so that the log's stream index sees
-- many writers, as a real service would; no expected revision.
local n = 0
local payload = string.rep("x", 64)

request = function()
  n = n + 1
  local body = '{"type":"BenchEvent","data":{"n":' .. n .. ',"payload":"' .. payload .. '"}}'
  return wrk.format("POST", "/streams/bench-" .. (n % 1000), {["Content-Type"] = "application/json"}, body)
end
