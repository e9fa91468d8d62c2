"""What an operator watches. ``metrics``: the Prometheus metrics and their exposition (one
process, or several sharing ``PROMETHEUS_MULTIPROC_DIR``); ``logs``: the log formats (plain
text, or one JSON object a line) with the request id on every line; ``context``: that
request id, bound where a request enters and carried into the Celery tasks it starts;
``events``: what the router reports per attempt, failover and request (metrics and one log
line each); ``views``: ``GET /metrics`` and who may read it."""
