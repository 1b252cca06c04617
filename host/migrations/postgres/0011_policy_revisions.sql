-- Auth policy components rolled out through the database (`taskflow auth
-- deploy`): every revision stored, the desired one, and each replica's state.

-- Every component deployed, with its detached minisign signature (NULL:
-- unsigned, refused by replicas that have trust configured).
CREATE TABLE policy_revisions (
    revision   BIGSERIAL PRIMARY KEY,
    component  BYTEA NOT NULL,
    sha256     TEXT NOT NULL,
    signature  TEXT,
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    note       TEXT NOT NULL DEFAULT ''
);

-- Each change of the desired revision (deploy, rollback, the first start),
-- announced by NOTIFY taskflow_policy;
-- the newest row is the desired one. Replicas follow it by `seq`.
CREATE TABLE policy_deployments (
    seq         BIGSERIAL PRIMARY KEY,
    revision    BIGINT NOT NULL REFERENCES policy_revisions (revision),
    -- `initial`, `deploy` or `rollback`.
    action      TEXT NOT NULL,
    -- Unix seconds.
    deployed_at BIGINT NOT NULL
);

-- Each replica's heartbeat: what serves there and what it last refused.
CREATE TABLE policy_replicas (
    replica               TEXT PRIMARY KEY,
    -- NULL: a component file that is no revision serves.
    active_revision       BIGINT,
    active_sha256         TEXT NOT NULL,
    -- RFC 3339: when the active component took over.
    active_since          TEXT NOT NULL,
    last_refusal_revision BIGINT,
    last_refusal_reason   TEXT,
    last_refusal          TEXT,
    -- Unix seconds.
    started_at            BIGINT NOT NULL,
    last_seen             BIGINT NOT NULL
);
