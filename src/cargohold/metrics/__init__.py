"""Prometheus metrics, summed over the worker processes (prometheus-client's multiprocess mode).

    directory.py   the multiprocess directory: made fresh by ``serve`` before the workers start, removed at stop
    batched.py     counters and histograms counted in memory and written to the shared files every 50 ms
    families.py    the metric families and their names
    recorder.py    what the hooks call: one object per worker, or none when metrics are off
    store.py       the blob store's operations, timed
    archive.py     the files of workers that ended, folded into one archive so that scrapes stay fast
    endpoint.py    ``GET /metrics`` on the main port (bearer token) or on a listener of its own
    listener.py    that listener: a process serving only /metrics
"""
