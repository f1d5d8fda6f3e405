-- wrk reporter: one JSON line with what bench/run.py needs (latencies in microseconds).
--
-- wrk "corrects" its latency histogram for coordinated omission before done() runs: every
-- latency above twice the run's mean interval per connection is copied again at that
-- latency minus 1, 2, 3 ... intervals. That interval is each target's own: at -c1 the
-- direct upstream's is ~30 µs, so one 100 ms stall becomes ~3,000 invented samples and
-- its p99 reads 48 ms, while a proxy's ~300 µs interval turns the same stall into ~300.
-- Latencies of different targets then cannot be subtracted. So the histogram itself is
-- written out too (value:count pairs, as wrk holds it), and procs.py undoes the correction
-- exactly; p50/p99 here are wrk's corrected figures, kept for reference.
done = function(summary, latency, requests)
  local e = summary.errors
  local hist = {}
  -- latency(i) scans wrk's dense array: skip the dump when that would take seconds.
  if #latency * (latency.max - latency.min + 1) < 4e9 then
    for i = 1, #latency do
      local value, count = latency(i)
      hist[i] = string.format("%d:%d", value, count)
    end
  end
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, "hist": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout, table.concat(hist, " ")))
end
