"""Prometheus' text exposition format, parsed with prometheus_client's parser: every sample's
value, and which samples only ever grow (counters, histogram buckets)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from backends.errors import InvalidInput

__all__ = ["Exposition", "SampleKey", "parse_exposition"]

Labels = dict[str, str]
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_MONOTONIC_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


@dataclass(frozen=True)
class Exposition:
    """One scrape of /metrics: every sample's value, and which samples only ever grow."""

    samples: dict[SampleKey, float]
    monotonic: frozenset[SampleKey]

    def values(self, name: str) -> Iterator[tuple[Labels, float]]:
        """The samples called ``name``, with their labels."""
        for (sample, labels), value in self.samples.items():
            if sample == name:
                yield dict(labels), value


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus' text format (prometheus_client's parser); InvalidInput if it is not."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[SampleKey, float] = {}
    monotonic: set[SampleKey] = set()
    try:
        for family in text_string_to_metric_families(text):
            grows = _MONOTONIC_SUFFIXES.get(family.type, ())
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                samples[key] = float(s.value)
                if s.name.endswith(grows) and s.name.startswith(family.name):
                    monotonic.add(key)
    except ValueError as exc:
        raise InvalidInput(f"not a Prometheus exposition: {exc}") from exc
    return Exposition(samples=samples, monotonic=frozenset(monotonic))
