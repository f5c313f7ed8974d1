-- Tenants and what they own: tokens, deployed modules and the job routes they set, queue
-- settings, egress settings, sealed secrets and cron schedules. Records are JSON documents of
-- the same types the embedded store keeps, so both backends read and write one shape.

CREATE TABLE tenants (
    name        text PRIMARY KEY,
    record      jsonb NOT NULL
);

CREATE TABLE tokens (
    token_hash  text PRIMARY KEY,
    tenant      text NOT NULL REFERENCES tenants (name)
);

-- Components by content hash, shared by every tenant that deploys one.
CREATE TABLE modules (
    hash        text PRIMARY KEY,
    bytes       bytea NOT NULL
);

CREATE TABLE tenant_modules (
    tenant      text NOT NULL,
    hash        text NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (tenant, hash)
);

-- The module serving each job: the newest deployment that offers it.
CREATE TABLE job_routes (
    tenant      text NOT NULL,
    job         text NOT NULL,
    hash        text NOT NULL,
    PRIMARY KEY (tenant, job)
);

CREATE TABLE queues (
    tenant      text NOT NULL,
    queue       text NOT NULL,
    settings    jsonb NOT NULL,
    PRIMARY KEY (tenant, queue)
);

CREATE TABLE egress (
    tenant      text PRIMARY KEY,
    settings    jsonb NOT NULL
);

-- Values are sealed by the engine before they get here (as in the embedded store).
CREATE TABLE secrets (
    tenant      text NOT NULL,
    name        text NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE schedules (
    tenant      text NOT NULL,
    name        text NOT NULL,
    version     bigint NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (tenant, name)
);
