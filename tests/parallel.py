"""The suite runs in parallel workers (pytest-xdist, ``bin/test``): each worker gets a
database of its own (pytest-django suffixes the test database's name with the worker's id)
and, here, a Redis database of its own, before Django reads its settings: the per-key
counters, the routing versions, the Celery broker and the channel layer of one worker's
tests are never seen by another's. Loaded with ``-p`` (pytest.ini), so that it runs before
pytest-django sets Django up; hub processes that tests start inherit the environment."""

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDIS_DATABASES = 16  # a default redis-server's


def redis_url_for_worker(url: str, worker: str) -> str:
    """``redis://host:6379/0`` for worker ``gw1`` -> ``redis://host:6379/2``: the next
    databases after the run's own, wrapping round within the server's 16 (a socket's
    ``unix://path?db=N`` likewise, in its query)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    base = int((query.get("db") if parts.scheme == "unix" else parts.path.strip("/")) or 0)
    index = (base + 1 + int(worker.removeprefix("gw"))) % REDIS_DATABASES
    if parts.scheme == "unix":
        return f"unix://{parts.netloc}{parts.path}?{urlencode({**query, 'db': index})}"  # urlunsplit drops "//"
    return urlunsplit(parts._replace(path=f"/{index}"))


_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = redis_url_for_worker(os.environ["REDIS_URL"], _worker)
