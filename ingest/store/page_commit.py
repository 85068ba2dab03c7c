"""What travels from fetchers to the writer: a page of rows with the context to checkpoint it."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.store.rows import Quarantined


@dataclass(frozen=True)
class PageCommit:
    """Rows of one API page for one partition, and where the partition stands after it."""

    partition_id: int
    next_cursor: str | None  # the server's cursor to continue after this page
    pos_ms: int | None  # position of the last event of the page (from the cursor), for rebuilding
    pos_id: str | None
    last: bool  # the partition is complete once this page is committed
    lines: tuple[bytes, ...]  # COPY text lines for the staging table
    quarantined: tuple[Quarantined, ...] = ()
    events_with_nulls: int = 0
    source: str = ""  # where the page came from, for quarantine records
    # The API's newest event (timestamp, id), on the page that walked the top of the order: the pass's
    # watermark and, on a store's first pass, its dataset identity.
    newest: tuple[int, str] | None = None
