"""meta.total from the documented endpoint: one request of limit 1, through limiter and retries."""

from __future__ import annotations

import threading

from ingest.client import ApiClient
from ingest.config import Settings
from ingest.fetch import Requester
from ingest.limiter import RateLimiter
from ingest.retry import RetryPolicy
from ingest.sources import EVENTS_PATH
from ingest.stats import Stats


def api_total(settings: Settings) -> int | None:
    limiter = RateLimiter()
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    client = ApiClient(settings.base_url, settings.api_key, limiter, settings.request_timeout_s, policy)
    requester = Requester(limiter, policy, Stats(), threading.Event())
    try:
        return requester.call(lambda: client.events_page(EVENTS_PATH, {"limit": 1}), "meta.total").total
    finally:
        client.close()
