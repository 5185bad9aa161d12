"""The metrics room: Prometheus, or the servers' own /metrics when there is none.

``queries`` (PromQL, escaped), ``sources`` (what every source answers, and the rows it makes),
``prometheus_source`` and ``scrape_source`` (the two sources), ``exposition`` (the text format),
``discovery`` (the file_sd targets file), ``history`` (series for plots). Imports no other
system's room.
"""
