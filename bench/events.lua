-- wrk script for the event-ingest benchmark: POST order.completed events, each with a new
-- Idempotency-Key (mode "new") or cycling through a fixed set of keys (mode "replay").
-- Bodies are a function of (thread, n) only, so a replayed key always carries the same body.
-- Arguments: path api_key mode run_prefix contacts replay_keys_per_thread
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  path = args[1]
  mode = args[3]
  prefix = args[4]
  contacts = tonumber(args[5])
  replay_keys = tonumber(args[6])
  counter = 0
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Api-Key " .. args[2]
end

function request()
  counter = counter + 1
  local n = counter
  if mode == "replay" then
    n = ((counter - 1) % replay_keys) + 1
  end
  local key = prefix .. "-" .. tid .. "-" .. n
  local c = (tid * 7919 + n) % contacts
  local body = string.format(
    '{"name":"order.completed","contact":{"external_id":"cust-%d","phone":"+1415555%04d",' ..
    '"email":"c%d@example.com","first_name":"Ada"},' ..
    '"properties":{"order_id":"%s","total":49.9}}', c, c, c, key)
  -- wrk.format uses the headers given instead of wrk.headers (Host, auth): copy them.
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Idempotency-Key"] = key
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
