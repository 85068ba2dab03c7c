"""One-request questions to the API outside a pass: its meta.total, and whether it still serves an event."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from ingest.api.client import ApiClient
from ingest.api.cursors import ZERO_ID, build_cursor
from ingest.api.retry_policy import RetryPolicy
from ingest.api.sources import EVENTS_PATH
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.config import Settings
from ingest.errors import CursorRejected
from ingest.stats import Stats
from ingest.store.origin import Anchor
from ingest.store.rows import usable_uuid

# Events asked for around an anchor: enough to find it among events tied at its timestamp.
ANCHOR_PROBE_EVENTS = 50


@contextlib.contextmanager
def api_clients(settings: Settings) -> Iterator[list[ApiClient]]:
    """One client per key of API_KEY, closed after."""
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    clients = [ApiClient(settings.base_url, key, settings.request_timeout_s, policy) for key in settings.api_keys]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def one_off_loop(settings: Settings, name: str, stats: Stats | None = None,
                 stop: threading.Event | None = None) -> RetryLoop:
    """A retry loop with a throttle of its own, for requests outside a pass (verify, submit, identity)."""
    return RetryLoop(Throttle(name), RetryPolicy(max_attempts=settings.max_attempts), stats or Stats(),
                     stop or threading.Event())


@contextlib.contextmanager
def api_requests(settings: Settings) -> Iterator[tuple[ApiClient, RetryLoop]]:
    """The first key's client and a one-off retry loop: the wiring of every command but the run."""
    with api_clients(settings) as clients:
        yield clients[0], one_off_loop(settings, "one-off")


def api_total_via(client: ApiClient, requester: RetryLoop) -> int | None:
    """meta.total from one documented request of limit 1."""
    return requester.call(lambda: client.events_page(EVENTS_PATH, {"limit": 1}), "meta.total").total


def anchor_served(client: ApiClient, requester: RetryLoop, anchor: Anchor) -> bool | None:
    """Whether the API serves `anchor` at its place in the order (None: it refuses the cursor to ask)."""
    start = build_cursor(anchor.ts_ms + 1, ZERO_ID, now_ms=client.server_clock.now_ms())
    params = {"limit": ANCHOR_PROBE_EVENTS, "cursor": start}
    try:
        page = requester.call(lambda: client.events_page(EVENTS_PATH, params), "dataset identity")
    except CursorRejected:
        return None
    return any(isinstance(e, dict) and usable_uuid(e.get("id")) == anchor.event_id for e in page.events)
