"""What the platform watches of the vLLM engines: their alerts and their Grafana dashboard."""
from __future__ import annotations

from typing import Any

from infra.lib.metrics import VLLM_KV_CACHE, VLLM_QUEUE
from infra.lib.monitoring import alert_rule, dashboard


def alert_rules() -> dict[str, Any]:
    by = "namespace, service"
    return {
        "groups": [
            {
                "name": "ml-platform-llm",
                "rules": [
                    alert_rule(
                        "LlmQueueBacklog", f"avg by ({by}) ({VLLM_QUEUE}) > 10", "10m", "warning",
                        "vLLM engines of {{ $labels.namespace }}/{{ $labels.service }} keep more than 10 requests waiting: the autoscaler is at its maximum or new replicas are not starting",
                    ),
                    alert_rule(
                        "LlmKvCacheSaturated", f"max by ({by}) ({VLLM_KV_CACHE}) > 0.95", "15m", "warning",
                        "KV cache of {{ $labels.namespace }}/{{ $labels.service }} above 95%: the engine preempts running requests",
                    ),
                    alert_rule(
                        "LlmTimeToFirstTokenHigh",
                        f"histogram_quantile(0.95, sum by ({by}, le) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) > 5",
                        "15m", "warning",
                        "p95 time to first token of {{ $labels.namespace }}/{{ $labels.service }} above 5 s",
                    ),
                ],
            }
        ]
    }


def llm_dashboard() -> dict[str, Any]:
    by = "namespace, service"
    legend = "{{namespace}}/{{service}}"
    return dashboard(
        "ml-llm",
        "ML platform / LLM serving",
        [
            ("p95 time to first token", f"histogram_quantile(0.95, sum by ({by}, le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))", "s", legend),
            ("p95 inter-token latency", f"histogram_quantile(0.95, sum by ({by}, le) (rate(vllm:inter_token_latency_seconds_bucket[5m])))", "s", legend),
            ("Generated tokens per second", f"sum by ({by}) (rate(vllm:generation_tokens_total[5m]))", "short", legend),
            ("Prompt tokens per second", f"sum by ({by}) (rate(vllm:prompt_tokens_total[5m]))", "short", legend),
            ("Requests waiting (queue depth)", f"sum by ({by}) ({VLLM_QUEUE})", "short", legend),
            ("KV-cache use", f"max by ({by}) ({VLLM_KV_CACHE})", "percentunit", legend),
        ],
    )
