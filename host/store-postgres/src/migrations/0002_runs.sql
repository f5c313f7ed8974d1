-- Runs and everything hanging on them: steps, timelines and logs, the ready set and its
-- claims, dead letters, idempotency and pending keys, events and their deliveries, and the
-- counters that statistics read instead of scanning runs.
--
-- A run's record is the JSON document the embedded store keeps; the columns beside it are
-- what queries select on. `version` and `ready_at` are the truth for the record's fields of
-- the same name (a wake moves `ready_at` without rewriting the document).

CREATE TABLE runs (
    id            text COLLATE "C" PRIMARY KEY,
    tenant        text COLLATE "C" NOT NULL,
    queue         text COLLATE "C" NOT NULL,
    job           text COLLATE "C" NOT NULL,
    status        text NOT NULL,
    version       bigint NOT NULL,
    -- In the ready set while not null (and not set aside).
    ready_at      bigint,
    -- A release's hold: not claimable before it. Lifted by a rate-limit change.
    hold_until    bigint,
    priority      integer NOT NULL,
    memory_bytes  bigint NOT NULL,
    created_at    bigint NOT NULL,
    parent        text COLLATE "C",
    parent_step   text COLLATE "C",
    -- An event wait's waiter entry: (name, correlation key or '').
    wait_name     text COLLATE "C",
    wait_key      text COLLATE "C",
    -- The claim: holder (a host's id) and when its lease lapses unless renewed.
    claimed_by    text COLLATE "C",
    lease_until   bigint,
    -- Which claim of the holder: a new one each time, so a write made under an earlier
    -- claim of the same host id (a second process with that id, a claim taken again after
    -- its lease lapsed) is refused too.
    claim_token   bigint,
    -- Why the run was taken out of scheduling for good, when it was.
    set_aside     text,
    -- Next free timeline and log sequence numbers.
    next_timeline integer NOT NULL DEFAULT 0,
    next_log      integer NOT NULL DEFAULT 0,
    record_bytes  bigint NOT NULL,
    record        json NOT NULL
);

CREATE INDEX runs_by_tenant ON runs (tenant, id);
CREATE INDEX runs_by_parent ON runs (parent, id) WHERE parent IS NOT NULL;
-- Each queue's due runs in the order a claim takes them.
CREATE INDEX runs_ready ON runs (tenant, queue, priority DESC, ready_at)
    WHERE ready_at IS NOT NULL AND set_aside IS NULL;
CREATE INDEX runs_due ON runs (ready_at) WHERE ready_at IS NOT NULL AND set_aside IS NULL;
CREATE INDEX runs_waiters ON runs (tenant, wait_name, wait_key) WHERE wait_name IS NOT NULL;
CREATE INDEX runs_claimed ON runs (claimed_by, lease_until) WHERE claimed_by IS NOT NULL;
CREATE INDEX runs_held ON runs (hold_until) WHERE hold_until IS NOT NULL;
CREATE INDEX runs_set_aside ON runs (id) WHERE set_aside IS NOT NULL;

CREATE TABLE steps (
    run       text COLLATE "C" NOT NULL,
    ordinal   integer NOT NULL,
    record    json NOT NULL,
    PRIMARY KEY (run, ordinal)
);

CREATE TABLE timeline (
    run       text COLLATE "C" NOT NULL,
    seq       integer NOT NULL,
    -- The attempt an entry names, if any: what tells a started run from a pending one.
    attempt   bigint,
    record    json NOT NULL,
    PRIMARY KEY (run, seq)
);

CREATE TABLE logs (
    run       text COLLATE "C" NOT NULL,
    seq       integer NOT NULL,
    record    json NOT NULL,
    PRIMARY KEY (run, seq)
);

-- Children not yet ended, per parent step.
CREATE TABLE pending_children (
    parent    text COLLATE "C" NOT NULL,
    step      text COLLATE "C" NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (parent, step)
);

CREATE TABLE dead_letters (
    tenant    text COLLATE "C" NOT NULL,
    queue     text COLLATE "C" NOT NULL,
    run       text COLLATE "C" NOT NULL,
    at        bigint NOT NULL,
    PRIMARY KEY (tenant, queue, run)
);

CREATE TABLE idempotency (
    tenant      text COLLATE "C" NOT NULL,
    queue       text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    expires_at  bigint,
    record      json NOT NULL,
    PRIMARY KEY (tenant, queue, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at) WHERE expires_at IS NOT NULL;

-- The pending run holding each (tenant, queue, job, key) of a keyed enqueue.
CREATE TABLE pending_keys (
    tenant    text COLLATE "C" NOT NULL,
    queue     text COLLATE "C" NOT NULL,
    job       text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    run       text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, queue, job, key)
);

CREATE TABLE events (
    tenant      text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    id          text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    expires_at  bigint NOT NULL,
    bytes       bigint NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (tenant, seq),
    UNIQUE (tenant, id)
);
CREATE INDEX events_match ON events (tenant, name, key, received_at, seq);
CREATE INDEX events_expiry ON events (expires_at, tenant, seq);

-- The newest event number per (tenant, name, key), kept after the event expires.
CREATE TABLE event_latest (
    tenant    text COLLATE "C" NOT NULL,
    name      text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (tenant, name, key)
);

CREATE TABLE event_deliveries (
    tenant    text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    run       text COLLATE "C" NOT NULL,
    step      text NOT NULL,
    PRIMARY KEY (tenant, seq, run)
);

-- The last event number of each tenant.
CREATE TABLE event_seqs (
    tenant    text COLLATE "C" PRIMARY KEY,
    seq       bigint NOT NULL
);

-- Counts kept with every write: runs by status, dead letters, stored bytes and events per
-- (tenant, queue), the tenant-wide ones under the queue ''. Rows are deltas, added up by
-- readers and folded into one row per counter now and then (see counters.rs), so writers
-- never wait on each other's counter rows.
CREATE TABLE counters (
    tenant    text COLLATE "C" NOT NULL,
    queue     text COLLATE "C" NOT NULL,
    counter   text COLLATE "C" NOT NULL,
    n         bigint NOT NULL
);
CREATE INDEX counters_by_queue ON counters (tenant, queue, counter);

-- The hosts using the database: each renews `last_seen` with its leases.
CREATE TABLE hosts (
    id          text COLLATE "C" PRIMARY KEY,
    started_at  bigint NOT NULL,
    last_seen   bigint NOT NULL
);
