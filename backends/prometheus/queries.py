"""PromQL: the queries the console asks, built from escaped label matchers, and the two PromQL
functions the direct scrape reproduces locally (``histogram_quantile`` and counter resets).

Label values come from users and containers (a model may be called ``a"b\\c``), so every value
goes through ``quote``: a PromQL string literal whose content is exactly the value, which can
neither break the query nor add matchers to it. Label and metric names are checked, not escaped:
they come from our own code and a bad one is a bug.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backends.errors import InvalidInput
from backends.records import Grouping

__all__ = [
    "DEPLOYMENT_LABELS",
    "VERSION_LABELS",
    "Scope",
    "bucket_quantile",
    "counter_increase",
    "duration_seconds",
    "group_labels",
    "matcher",
    "quote",
    "selector",
]

DEPLOYMENT_LABELS = ("deployment", "model", "version", "alias", "instance")
VERSION_LABELS = ("model", "version")

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_DURATION = re.compile(r"(?:(\d+)(ms|s|m|h|d|w|y))+\Z")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_OPERATORS = ("=", "!=", "=~", "!~")


def quote(value: str) -> str:
    """A double-quoted PromQL string literal that means exactly ``value``."""
    out = ['"']
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")  # other control characters: never raw in a query
        elif 0xD800 <= ord(ch) < 0xE000:
            # A lone surrogate is not UTF-8: no Prometheus label can hold it, so nothing matches.
            raise InvalidInput(f"label value {value!r} is not valid Unicode text")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def check_label_name(name: str) -> str:
    """``name`` if it is a valid Prometheus label name; InvalidInput otherwise."""
    if not _LABEL_NAME.match(name):
        raise InvalidInput(f"{name!r} is not a Prometheus label name")
    return name


def matcher(name: str, value: str, op: str = "=") -> str:
    """One label matcher, e.g. ``model="iris"``, with the value escaped."""
    if op not in _OPERATORS:
        raise InvalidInput(f"{op!r} is not a PromQL matcher operator")
    return f"{check_label_name(name)}{op}{quote(value)}"


def selector(metric: str, matchers: Iterable[str] = ()) -> str:
    """``metric{m1,m2}`` (or just ``metric``), from matchers built by ``matcher``."""
    if not _METRIC_NAME.match(metric):
        raise InvalidInput(f"{metric!r} is not a Prometheus metric name")
    inside = ",".join(matchers)
    return f"{metric}{{{inside}}}" if inside else metric


def duration_seconds(duration: str) -> float:
    """Seconds in a PromQL duration such as ``1m`` or ``1h30m``; InvalidInput if malformed."""
    if not _DURATION.match(duration):
        raise InvalidInput(f"{duration!r} is not a duration (try 30s, 5m, 1h)")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(duration)))


def group_labels(per: Grouping) -> tuple[str, ...]:
    """The labels one row is keyed by: per deployment (target) or per model version."""
    return DEPLOYMENT_LABELS if per == "deployment" else VERSION_LABELS


@dataclass(frozen=True)
class Scope:
    """Which serving targets a question is about; every field set is an equality matcher.

    Values are taken verbatim (from users, container labels) and escaped when the query is built.
    """

    deployment: str | None = None
    model: str | None = None
    version: str | None = None
    alias: str | None = None
    instance: str | None = None  # host:port, for a server watched by address
    # "canary": a canary release's container (a target of its own beside the deployment's
    # router). Unset, a question is about what serves: canaries' series are left out, so a
    # deployment is not two rows while a release runs (the release shows them side by side).
    role: str | None = None

    def wanted(self) -> dict[str, str]:
        """The label values asked for, by label name, in a stable order."""
        fields = {
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "instance": self.instance,
            "role": self.role,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def matchers(self) -> list[str]:
        """One equality matcher per label asked for (and none of a canary's series unless the
        role is asked for)."""
        found = [matcher(name, value) for name, value in self.wanted().items()]
        return found if self.role is not None else [*found, matcher("role", "canary", "!=")]

    def admits(self, labels: dict[str, str]) -> bool:
        """Whether a series (or a scrape target) with these labels is in the scope."""
        return all(labels.get(k, "") == v for k, v in self.wanted().items())


class Queries:
    """The PromQL expressions behind one monitor row, for a scope, a window and a grouping."""

    def __init__(
        self, scope: Scope | None = None, window: str = "1m", per: Grouping = "deployment"
    ) -> None:
        duration_seconds(window)  # validates
        self.scope = scope or Scope()
        self.window = window
        self.by = ", ".join(group_labels(per))

    def _sel(self, metric: str, *extra: str) -> str:
        return selector(metric, [*self.scope.matchers(), *extra])

    def _rate_sum(self, metric: str, *extra: str, by: str | None = None) -> str:
        return f"sum by ({by or self.by}) (rate({self._sel(metric, *extra)}[{self.window}]))"

    def request_rate(self) -> str:
        """Requests answered per second."""
        return self._rate_sum("mlops_requests_total")

    def _status_ratio(self, status_regex: str) -> str:
        part = self._rate_sum("mlops_requests_total", matcher("status", status_regex, "=~"))
        total = self._rate_sum("mlops_requests_total")
        # `or total * 0`: a target that never answered 5xx has no such series; its ratio is 0.
        return f"({part} or {total} * 0) / {total}"

    def error_ratio(self) -> str:
        """Fraction of answers that were 5xx (the server's fault)."""
        return self._status_ratio("5..")

    def client_error_ratio(self) -> str:
        """Fraction of answers that were 4xx (the caller's fault)."""
        return self._status_ratio("4..")

    def latency_quantile(self, q: float) -> str:
        """The q-quantile of request latency, from the histogram's bucket rates."""
        if not 0 <= q <= 1:
            raise InvalidInput(f"quantile {q} is not between 0 and 1")
        buckets = self._rate_sum("mlops_request_duration_seconds_bucket", by=f"{self.by}, le")
        return f"histogram_quantile({q:g}, {buckets})"

    def batch_size_mean(self) -> str:
        """Mean rows per model call."""
        rows, calls = (
            self._rate_sum("mlops_batch_size_sum"),
            self._rate_sum("mlops_batch_size_count"),
        )
        return f"{rows} / {calls}"

    def requests_total(self) -> str:
        """Requests answered since each server started (summed over a version's deployments)."""
        return f"sum by ({self.by}) ({self._sel('mlops_requests_total')})"

    def feature_gauge(self, metric: str, aggregate: str = "max") -> str:
        """A per-feature drift gauge (PSI, KS, KS p-value), worst value per row and feature."""
        if aggregate not in ("max", "min"):
            raise InvalidInput(f"{aggregate!r} is not max or min")
        return f"{aggregate} by ({self.by}, feature) ({self._sel(metric)})"

    def drift_window_rows(self) -> str:
        """Rows in the servers' drift windows."""
        return f"max by ({self.by}) ({self._sel('mlops_drift_window_rows')})"

    def per_model_version(self, metric: str, *extra: str, where: Sequence[str] = ()) -> str:
        """A gauge the server labels by ``model_version`` (the version that answered the rows
        it covers), kept apart per row and model_version: the caller keeps the row's own.
        ``where``: more matchers (``matcher(...)``)."""
        labels = ", ".join((self.by, "model_version", *extra))
        return f"max by ({labels}) ({self._sel(metric, *where)})"

    def up(self, job: str) -> str:
        """1 for a target Prometheus scraped successfully, 0 for one it could not."""
        return f"max by ({self.by}) ({self._sel('up', matcher('job', job))})"

    def model_info(self) -> str:
        """The model each target says it serves (name, version from the server itself)."""
        return self._sel("mlops_model_info")

    def alerts(self) -> str:
        """Pending and firing alerts about the scope (Prometheus' synthetic ALERTS series)."""
        return self._sel("ALERTS")

    def alerts_since(self) -> str:
        """When each alert became active (the ALERTS_FOR_STATE series' value)."""
        return self._sel("ALERTS_FOR_STATE")


# --------------------------------------------------------------------------- local PromQL


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """``histogram_quantile`` as Prometheus computes it, over (upper bound, cumulative count).

    Linear interpolation inside the bucket holding the rank; a lower bound of 0 for the first
    bucket (when its upper bound is positive); the second-highest bound when the rank falls in
    the +Inf bucket. None where Prometheus answers NaN (no observations, no +Inf bucket).
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    merged: list[list[float]] = []  # coalesce equal bounds, as Prometheus does
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    previous = merged[0][1]
    for bucket in merged[1:]:  # float noise in summed rates: a relative step of 1e-12 is none
        delta = abs(bucket[1] - previous)
        if delta == 0:
            continue
        if bucket[1] != 0 and delta / bucket[1] <= 1e-12:
            bucket[1] = previous
        else:
            previous = bucket[1]
    highest = merged[0][1]
    for bucket in merged[1:]:  # force monotonic counts, as Prometheus does
        highest = max(highest, bucket[1])
        bucket[1] = highest
    if len(merged) < 2:
        return None
    observations = merged[-1][1]
    if observations == 0:
        return None
    rank = q * observations
    b = next(i for i in range(len(merged)) if i == len(merged) - 1 or merged[i][1] >= rank)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def counter_increase(previous: float, current: float) -> float:
    """How much a counter grew between two scrapes; a drop means the process restarted."""
    return current - previous if current >= previous else current
