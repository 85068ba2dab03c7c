-- Idempotent: runs at the start of every run.

CREATE TABLE IF NOT EXISTS ingested_events (
    id          uuid PRIMARY KEY,           -- the API's id: dedup and submission key
    event_type  text,                       -- NULL when missing or not a string
    "timestamp" timestamptz,                -- exact to the millisecond; NULL when not a time
    session_id  uuid,
    user_id     uuid,
    data        jsonb NOT NULL,             -- the event as received
    ingested_at timestamptz NOT NULL DEFAULT now()
);

-- Events that cannot be stored at all (no usable id, not an object, not storable as jsonb).
CREATE TABLE IF NOT EXISTS ingest_quarantine (
    quarantine_id  bigserial PRIMARY KEY,
    payload        bytea NOT NULL,          -- raw JSON as received; bytea because it may hold NUL
    reason         text NOT NULL,
    source         text NOT NULL,           -- partition and cursor it came from
    quarantined_at timestamptz NOT NULL DEFAULT now()
);

-- One row per partition of the current pass; a pass is complete when every row is done.
-- A partition holds events with lo_ms <= timestamp < hi_ms (NULL: unbounded on that side).
CREATE TABLE IF NOT EXISTS ingest_partitions (
    partition_id integer PRIMARY KEY,
    lo_ms        bigint,
    hi_ms        bigint,
    cursor       text,                      -- the server's cursor after the last committed page
    pos_ms       bigint,                    -- (pos_ms, pos_id): last committed event position,
    pos_id       text,                      --   from which an expired cursor is rebuilt
    done         boolean NOT NULL DEFAULT false,
    events       bigint NOT NULL DEFAULT 0, -- rows received for this partition
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The one row of pass-level state: what the last complete pass covered.
CREATE TABLE IF NOT EXISTS ingest_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark_ms  bigint,                   -- newest stored timestamp when the last pass completed
    oldest_ms     bigint,                   -- oldest timestamp estimated when the pass was planned
    min_split_ms  bigint NOT NULL DEFAULT 0, -- narrowest range worth splitting for an idle worker
    completed_at  timestamptz
);

CREATE TABLE IF NOT EXISTS ingest_runs (
    run_id        bigserial PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    outcome       text NOT NULL DEFAULT 'running',
    strategy      text,
    events_stored bigint NOT NULL DEFAULT 0,
    duplicates    bigint NOT NULL DEFAULT 0,
    quarantined   bigint NOT NULL DEFAULT 0,
    pid           integer NOT NULL DEFAULT pg_backend_pid()
);

-- One row per accepted submission of the stored ids (the API allows only 5 per key).
CREATE TABLE IF NOT EXISTS ingest_submissions (
    submission_id     text PRIMARY KEY,       -- the API's submissionId
    event_count       bigint NOT NULL,        -- ids the API counted
    ids_sent          bigint NOT NULL,        -- ids we streamed
    submission_number integer,
    remaining         integer,                -- submissions the key has left
    repo              text NOT NULL,
    submitted_at      timestamptz NOT NULL,   -- the API's submittedAt, or ours when it gave none
    answer            jsonb NOT NULL          -- the API's answer as received
);
