-- Tenants and what they own: tokens, deployed modules and the job routes they set, queue
-- settings, egress settings, sealed secrets and cron schedules. Records are JSON documents of
-- the same types the embedded store keeps, so both backends read and write one shape: `json`
-- rather than `jsonb`, which refuses the `\u0000` a tenant's payload may hold. Names sort by
-- their bytes (`COLLATE "C"`), as in the embedded store, whatever the database's locale.

CREATE TABLE tenants (
    name        text COLLATE "C" PRIMARY KEY,
    record      json NOT NULL
);

CREATE TABLE tokens (
    token_hash  text COLLATE "C" PRIMARY KEY,
    tenant      text COLLATE "C" NOT NULL REFERENCES tenants (name)
);

-- Components by content hash, shared by every tenant that deploys one.
CREATE TABLE modules (
    hash        text COLLATE "C" PRIMARY KEY,
    bytes       bytea NOT NULL
);

CREATE TABLE tenant_modules (
    tenant      text COLLATE "C" NOT NULL,
    hash        text COLLATE "C" NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (tenant, hash)
);

-- The module serving each job: the newest deployment that offers it.
CREATE TABLE job_routes (
    tenant      text COLLATE "C" NOT NULL,
    job         text COLLATE "C" NOT NULL,
    hash        text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, job)
);

CREATE TABLE queues (
    tenant      text COLLATE "C" NOT NULL,
    queue       text COLLATE "C" NOT NULL,
    settings    json NOT NULL,
    PRIMARY KEY (tenant, queue)
);

CREATE TABLE egress (
    tenant      text COLLATE "C" PRIMARY KEY,
    settings    json NOT NULL
);

-- Values are sealed by the engine before they get here (as in the embedded store).
CREATE TABLE secrets (
    tenant      text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE schedules (
    tenant      text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (tenant, name)
);
