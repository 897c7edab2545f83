"""Reading ``/metrics`` answers in tests: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from spinnakr import metrics_view

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def local() -> Samples:
    """What ``/metrics`` would answer now, read in this process (the files of every process)."""
    return parse(metrics_view.render().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter nobody has touched yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
