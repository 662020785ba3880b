-- wrk script for bench/intake.py: Alertmanager v4 webhooks, in the captured sample's envelope.
--   BENCH_ALERTS    alerts per webhook
--   BENCH_DISTINCT  1: every alert new (fingerprint from thread, request and index); 0: one body again and again
--   BENCH_SALT      keeps cells apart (fingerprints and instances)
--   BENCH_TOKEN     the bearer token
--   BENCH_TID_BASE  added to wrk's thread numbers: wrk processes run side by side make distinct fingerprints
local per = tonumber(os.getenv("BENCH_ALERTS") or "1")
local distinct = os.getenv("BENCH_DISTINCT") == "1"
local salt = os.getenv("BENCH_SALT") or "0"
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")}

local next_id = 1 + tonumber(os.getenv("BENCH_TID_BASE") or "0")
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local alert = '{"status":"firing","labels":{"alertname":"ServiceDown","instance":"bench-%s-%d-%d-%d.example:9100",'
  .. '"job":"api","service":"api","severity":"critical"},"annotations":{"description":"api has not answered for 5 minutes"},'
  .. '"startsAt":"2026-11-24T16:14:26.806317911Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"",'
  .. '"fingerprint":"%04x%08x%04x"}'

local function body(k)
  local alerts = {}
  for i = 1, per do
    alerts[i] = string.format(alert, salt, tid, k, i, tid, k, i)
  end
  return '{"receiver":"engine","status":"firing","alerts":[' .. table.concat(alerts, ",") .. '],'
    .. '"groupLabels":{"alertname":"ServiceDown"},"commonLabels":{"alertname":"ServiceDown"},"commonAnnotations":{},'
    .. '"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{}:{alertname=\\"ServiceDown\\"}-'
    .. salt .. '-' .. tid .. '-' .. k .. '","truncatedAlerts":0}'
end

local counter, same = 0, nil
function request()
  if not distinct then
    same = same or wrk.format("POST", nil, headers, body(0))
    return same
  end
  counter = counter + 1
  return wrk.format("POST", nil, headers, body(counter))
end

function done(summary, latency, requests)
  -- One JSON line for bench/intake.py to read (errors.status: answers of 400 and above).
  io.write(string.format('BENCH {"requests":%d,"seconds":%.6f,"p50_ms":%.3f,"p99_ms":%.3f,"non_200":%d,"errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
