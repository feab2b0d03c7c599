"""Operations endpoints: liveness (/healthz), readiness (/readyz) and Prometheus (/-/metrics).

What a company's platform needs to run the portal (docs/operations.md): probes that need no
login and say nothing sensitive, and metrics of the product's own background work — pings
stored and refused, label changes waiting, scores waiting for a refresh, queues, the schedule.
"""
