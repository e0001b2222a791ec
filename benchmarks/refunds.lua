-- wrk script: partial refunds of 0.010 spread round-robin over the orders listed, one per line,
-- in the file named by PAYOPS_BENCH_ORDERS, authenticated with PAYOPS_BENCH_KEY (an API key).
-- done() prints one machine-readable line that benchmarks/refunds.py parses.
local orders = {}
local counter = 0

function init(args)
  for line in io.lines(os.getenv("PAYOPS_BENCH_ORDERS")) do
    if #line > 0 then table.insert(orders, line) end
  end
  counter = math.random(#orders)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Api-Key " .. os.getenv("PAYOPS_BENCH_KEY")
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"operation": "refund", "amount": "0.010"}'
end

function request()
  counter = counter + 1
  return wrk.format(nil, "/b/pbl/v1/operation/" .. orders[(counter % #orders) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "mean_us": %.1f, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}\n',
    summary.requests, summary.duration, latency.mean, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
