-- wrk script: 100 events per request (one JSON array), POST /streams/{stream}.
-- Report events/s as requests/s x 100.
local n = 0
local events = {}
for i = 1, 100 do
  events[i] = '{"type":"BenchEvent","data":{"i":' .. i .. ',"payload":"' .. string.rep("x", 64) .. '"}}'
end
local body = "[" .. table.concat(events, ",") .. "]"

request = function()
  n = n + 1
  return wrk.format("POST", "/streams/batch-" .. (n % 1000), {["Content-Type"] = "application/json"}, body)
end
