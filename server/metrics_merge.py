"""One exposition from the /metrics of every task of a Swarm service.

A service's router is its deployment's one scrape target, as on one engine; behind it are N
tasks, each counting only the requests it answered. The router asks every task and writes their
samples out together, each labelled with the task it came from (``task="ADDRESS"``), as
Prometheus would have them from N targets: the console's queries and the direct scrape already
sum counters and histograms and take the worst of a gauge over what they group by, so N tasks
read as one deployment. A metric family is written once (one HELP and TYPE), its samples from
every task under it: the text format allows a family's lines in one place only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["TASK_LABEL", "merge"]

TASK_LABEL = "task"


def merge(expositions: Mapping[str, str]) -> bytes:
    """The text exposition of every family in ``expositions`` (task address → its /metrics),
    each sample labelled with its task. A task whose text does not parse is left out (the
    others are not lost for it)."""
    from prometheus_client import CollectorRegistry, generate_latest

    families: dict[str, Any] = {}
    for task, text in sorted(expositions.items()):
        for family in _families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = _empty_like(family)
            elif merged.type != family.type:
                continue  # two tasks disagree on a family's type: the first one's stands
            for sample in family.samples:
                labels = {**sample.labels, TASK_LABEL: task}
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return bytes(generate_latest(registry))


def _families(text: str) -> Iterator[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        yield from list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError):
        return


def _empty_like(family: Any) -> Any:
    from prometheus_client.metrics_core import Metric

    return Metric(family.name, family.documentation, family.type, family.unit)


class _Families:
    """A collector of metric families already made (prometheus_client writes collectors)."""

    def __init__(self, families: Iterable[Any]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Any]:
        yield from self._families
