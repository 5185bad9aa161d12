-- One iris row per request, as a client scoring live traffic would send it.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("MLOPS_BENCH_BODY") or '{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.9, 3.0, 5.1, 1.8]]}}'

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(50), latency:percentile(99)))
end
