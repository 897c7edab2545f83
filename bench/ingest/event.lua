-- One pageview per request, from a random client address (X-Forwarded-For) and page.
local domain = os.getenv("BENCH_DOMAIN") or "bench.spinnakr.test"
local agents = {
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
}
local referrers = { "https://www.google.com/", "https://t.co/x", "", "https://news.ycombinator.com/item?id=1" }

request = function()
  local path = "/page/" .. math.random(1, 200)
  local body = '{"n":"pageview","u":"https://' .. domain .. path .. '?utm_source=bench","d":"' .. domain
    .. '","r":"' .. referrers[math.random(1, #referrers)] .. '","w":' .. math.random(320, 2560) .. '}'
  wrk.headers["X-Forwarded-For"] = string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255),
    math.random(0, 255), math.random(1, 254))
  wrk.headers["User-Agent"] = agents[math.random(1, #agents)]
  wrk.headers["Content-Type"] = "text/plain"
  return wrk.format("POST", "/api/event", nil, body)
end
