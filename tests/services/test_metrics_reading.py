"""What the sampler makes of metrics.k8s.io and Pod objects, without a cluster."""

from __future__ import annotations

import pytest

from services import metrics
from services.models import RevisionUsage


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("1500000n", 0.0015), ("250m", 0.25), ("2", 2.0), ("262144Ki", 268435456.0), ("1Gi", 1073741824.0),
     ("", 0.0), ("lots", 0.0), ("5Xi", 0.0)],
)
def test_it_reads_quantities(quantity, value):
    assert metrics.parse_quantity(quantity) == pytest.approx(value)


def pod_metrics(service: str, pod: str, *usages: tuple[str, str]) -> dict:
    return {"metadata": {"name": pod, "labels": {"ale.dev/service": service}},
            "containers": [{"name": f"c{i}", "usage": {"cpu": cpu, "memory": mem}} for i, (cpu, mem) in enumerate(usages)]}


def test_it_sums_containers_per_pod_and_pods_per_service():
    reading = metrics.read_pod_metrics([
        pod_metrics("a", "a-1", ("100m", "10Mi"), ("50m", "5Mi")),
        pod_metrics("a", "a-2", ("100m", "10Mi")),
        pod_metrics("b", "b-1", ("1000000n", "1024Ki")),
        {"metadata": {"name": "build-x", "labels": {}}, "containers": [{"usage": {"cpu": "1", "memory": "1Gi"}}]},
    ])
    assert reading.services["a"] == (pytest.approx(0.25), 25 * 1024 * 1024, 2)
    assert reading.services["b"] == (pytest.approx(0.001), 1024 * 1024, 1)
    assert ("a", "a-1", pytest.approx(0.15), 15 * 1024 * 1024) in reading.pods
    assert "build-x" not in {pod for _, pod, _, _ in reading.pods}


def test_it_reads_the_last_termination_of_restarted_containers():
    pod = {
        "metadata": {"name": "api-1", "labels": {"ale.dev/service": "a"}},
        "spec": {"containers": [{"name": "api", "resources": {"limits": {"memory": "256Mi"}}}, {"name": "side"}]},
        "status": {"containerStatuses": [
            {"name": "api", "restartCount": 3, "lastState": {"terminated": {
                "reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-01-01T00:00:10Z"}}},
            {"name": "side", "restartCount": 0, "lastState": {}},
        ]},
    }
    [ended] = metrics.read_terminations([pod])
    assert ended.container == "api" and ended.restart_count == 3 and ended.reason == "OOMKilled"
    assert ended.memory_limit_bytes == 256 * 1024 * 1024 and ended.at == 1767225610


def test_it_says_what_changed_past_the_threshold_only():
    before = RevisionUsage(number=12, cpu_cores=0.1, memory_bytes=100)
    assert metrics.usage_change(RevisionUsage(number=13, cpu_cores=0.11, memory_bytes=185), before) == (
        "memory +85% since revision 12"
    )
    assert metrics.usage_change(RevisionUsage(number=13, cpu_cores=0.05, memory_bytes=110), before) == (
        "CPU -50% since revision 12"
    )
    assert metrics.usage_change(RevisionUsage(number=13, cpu_cores=0.11, memory_bytes=110), before) == ""


def test_it_words_an_out_of_memory_kill():
    assert metrics.oom_sentence(256 * 1024 * 1024, 3) == "Out of memory: used its 256 MiB limit, restarted 3 times."
    assert metrics.oom_sentence(None, 1) == "Out of memory: used all the memory it could, restarted 1 time."
