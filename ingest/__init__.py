"""datasync-ingest: every DataSync event into PostgreSQL, exactly once, resumable."""
