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
-- The event's id when it is a usable UUID (stored elsewhere, a damaged copy does not count as missing).
ALTER TABLE ingest_quarantine ADD COLUMN IF NOT EXISTS event_id uuid;
-- One row per distinct payload: a re-pass meets the same damaged event again. Stores made before this
-- index may hold repeats; they are folded first (a no-op once the index exists).
DELETE FROM ingest_quarantine a USING ingest_quarantine b
    WHERE md5(a.payload) = md5(b.payload) AND a.quarantine_id > b.quarantine_id
      AND to_regclass('ingest_quarantine_payload') IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ingest_quarantine_payload ON ingest_quarantine (md5(payload));

-- One row per pass over the API: `full` walks the whole time range, `incremental` walks from the
-- watermark minus a lookback window up to the newest event. At most one pass is open (completed_at NULL).
CREATE TABLE IF NOT EXISTS ingest_passes (
    pass_id      bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('full', 'incremental')),
    floor_ms     bigint,                    -- oldest timestamp the pass covers (NULL: everything)
    newest_ms    bigint,                    -- the API's newest event when the pass walked the top
    api_total    bigint,                    -- meta.total when the pass ended
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

-- The partitions of the open pass and of the last complete full pass (kept: `verify` proves from them
-- that the time range was covered without a gap). A pass is complete when every row of it is done.
-- A partition holds events with lo_ms <= timestamp < hi_ms (NULL: unbounded on that side), bounds
-- taken in the API's own (timestamp, id) order.
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
ALTER TABLE ingest_partitions ADD COLUMN IF NOT EXISTS pass_id bigint REFERENCES ingest_passes;

-- What each budget learned, so a restart neither walks into a lockout nor re-learns a rate from 429s:
-- the pace learned where the API announces nothing (the feed) and the deadline of its last 429.
CREATE TABLE IF NOT EXISTS ingest_budgets (
    name        text PRIMARY KEY,               -- feed@, header@, query@ and the key's fingerprint
    rate_per_s  double precision,               -- requests/s learned from what was granted (NULL: none)
    not_before  timestamptz,                    -- no request before this (a 429's Retry-After)
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Which API this store holds; a run, verify or submit against another refuses (exit 2).
CREATE TABLE IF NOT EXISTS ingest_origin (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    base_url        text NOT NULL,          -- API_BASE_URL, or `demo` for the bundled simulator
    key_fingerprint text NOT NULL,          -- sha256 of a prefix and API_KEY, shortened: not the key
    anchor_ms       bigint,                 -- dataset identity: the newest event the API served
    anchor_id       uuid,                   --   on the first pass, (timestamp, id)
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- The one row of pass-level state: what the last complete pass covered.
CREATE TABLE IF NOT EXISTS ingest_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark_ms  bigint,                   -- the API's newest event when the last complete pass began
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
-- A run's progress as its live bar shows it, every PROGRESS_INTERVAL: `status` reads it from another process.
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS progress_at timestamptz;
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS in_table bigint;             -- events in the table then
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS api_total bigint;            -- meta.total, once known
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS rate double precision;       -- events/s stored by the run
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS eta_s double precision;      -- seconds left at that rate
ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS throttled jsonb;             -- [[budget, 429s], ...]

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
