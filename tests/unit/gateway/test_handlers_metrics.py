"""The gateway's own counter of unmapped token types: counted by source and type, labels bounded."""

from collections import Counter

from aiyield.gateway.handlers import UNKNOWN_TYPE_LABELS, GatewayMetrics


class _Readiness:
    checks = 0


def test_unknown_token_types_are_counted_under_bounded_labels():
    metrics = GatewayMetrics(_Readiness())
    metrics.count_unknown_types("otlp_metrics", Counter({"cache_creation": 2}))
    metrics.count_unknown_types("otlp_metrics", Counter({f"type-{i}": 1 for i in range(UNKNOWN_TYPE_LABELS + 5)}))
    value = metrics.registry.get_sample_value
    assert value("aiyield_unknown_token_types_total", {"source": "otlp_metrics", "type": "cache_creation"}) == 2
    assert value("aiyield_unknown_token_types_total", {"source": "otlp_metrics", "type": "other"}) == 6
    labels = {s.labels["type"] for m in metrics.registry.collect() if m.name == "aiyield_unknown_token_types"
              for s in m.samples}
    assert len(labels) == UNKNOWN_TYPE_LABELS + 1
