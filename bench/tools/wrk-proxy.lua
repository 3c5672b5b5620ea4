-- wrk script for bench/run. wrk cannot talk to a forward proxy by itself: this script
-- makes every request use the given request target, an absolute-form URL
-- ("http://127.0.0.1:ORIGIN/100b") when the connection goes to a proxy, and the given
-- Host header. The request stays static (built once), so wrk's fast path is kept.
--
--   wrk -t2 -c50 -d10s -s wrk-proxy.lua http://127.0.0.1:PROXY/ -- TARGET HOST
--
-- done() prints one line of key=value pairs for bench/run.

function init(args)
   if args[1] then wrk.path = args[1] end
   if args[2] then wrk.headers["Host"] = args[2] end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "wrk requests=%d duration_s=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d bytes=%d\n",
      summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, e.connect, e.read, e.write,
      e.status, e.timeout, summary.bytes))
end
