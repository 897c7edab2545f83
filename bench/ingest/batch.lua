-- One batch of BENCH_BATCH events per request to /api/events, with an API key.
local domain = os.getenv("BENCH_DOMAIN") or "bench.spinnakr.test"
local size = tonumber(os.getenv("BENCH_BATCH") or "100")
local key = os.getenv("BENCH_KEY") or ""

request = function()
  local parts = {}
  for i = 1, size do
    parts[i] = '{"name":"pageview","url":"https://' .. domain .. '/p/' .. math.random(1, 200) .. '","domain":"'
      .. domain .. '","ip":"' .. string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255),
      math.random(0, 255), math.random(1, 254)) .. '","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"}'
  end
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/events", nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
