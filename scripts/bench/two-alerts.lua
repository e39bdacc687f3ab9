-- wrk script for the ingest benchmarks: POST one real two-alert Alertmanager
-- notification (tests/fixtures/accuracy-firing-both-variants.json unless
-- FIXTURE names another file), made unique per request (its groupKey carries
-- the thread and a counter) so the router stores every request instead of
-- answering "duplicate". Every receiver gets the same bytes.
local body_template
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  local path = os.getenv("FIXTURE") or "tests/fixtures/accuracy-firing-both-variants.json"
  local f = assert(io.open(path, "rb"))
  body_template = f:read("*a")
  f:close()
  assert(body_template:find('"groupKey": "', 1, true), path .. " has no groupKey to make unique")
end

function request()
  counter = counter + 1
  local body = body_template:gsub('"groupKey": "', '"groupKey": "wrk-' .. tid .. '-' .. counter .. '-', 1)
  return wrk.format("POST", "/api/v1/alerts", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("non2xx_or_errors=%d\n",
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
