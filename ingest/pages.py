"""What travels from fetchers to the writer: a page of rows with the context to checkpoint it."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.transform import Quarantined


@dataclass(frozen=True)
class Page:
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


@dataclass(frozen=True)
class PartitionSplit:
    """A partition was narrowed and a new one created; persist both in one transaction."""

    narrowed_id: int
    narrowed_lo_ms: int | None
    new_id: int
    new_lo_ms: int | None
    new_hi_ms: int | None
