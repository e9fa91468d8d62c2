import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelhub.observability.metrics import hub_metrics_reset


@pytest.fixture(autouse=True)
def _metrics_fresh():
    """Each test counts from zero (this process keeps its own metrics: no multiprocess
    directory in the test process)."""
    hub_metrics_reset()
    yield
    hub_metrics_reset()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """The exposition, parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict, name: str, **labels) -> float:
    """The sum over the series of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (sample, found), v in parsed.items() if sample == name and wanted <= found)


def series(parsed: dict, name: str) -> list[dict]:
    return [dict(found) for (sample, found) in parsed if sample == name]
