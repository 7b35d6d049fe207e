-- wrk script of bench/click_redirect.py: GET <path><token> with tokens read from a file (the
-- benchmark's mix of real, forged and unknown tokens), every 20th request from a link-preview
-- user agent. Args: path, tokens file, bot user agent, human user agent.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  bot_agent = args[3]
  human_agent = args[4]
  tokens = {}
  for line in io.lines(args[2]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  counter = (id or 1) * 7919
end

function request()
  counter = counter + 1
  local agent = human_agent
  if counter % 20 == 0 then agent = bot_agent end
  local token = tokens[(counter % #tokens) + 1]
  return wrk.format("GET", path .. token, { ["User-Agent"] = agent })
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors_status=%d p50_us=%d p95_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(95)))
end
