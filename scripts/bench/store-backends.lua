-- wrk script for scripts/bench/store-backends.sh: POST the fixture payloads
-- round-robin, each made unique - its groupKey carries WRK_PREFIX (one per wrk
-- process: several wrk processes run at once against several replicas), the
-- thread and a counter - so the router stores every one.
local bodies = {}
local counter = 0
local thread_id = 0
local fixtures = os.getenv("FIXTURE_DIR") or "tests/fixtures"
local prefix = os.getenv("WRK_PREFIX") or "wrk"

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  for _, name in ipairs({"accuracy-firing.json", "accuracy-firing-both-variants.json",
      "accuracy-resolved.json", "server-down-firing.json", "latency-firing-unicode.json",
      "cpu-firing-truncated.json"}) do
    local f = assert(io.open(fixtures .. "/" .. name, "rb"))
    table.insert(bodies, f:read("*a"))
    f:close()
  end
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  body = body:gsub('"groupKey": "', '"groupKey": "' .. prefix .. '-' .. tid .. '-' .. counter .. '-', 1)
  return wrk.format("POST", "/api/v1/alerts", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("non2xx_or_errors=%d\n",
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
