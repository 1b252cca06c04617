-- Candidate policies shadowing the active one (`taskflow auth shadow`):
-- each decides the live traffic next to the active policy, whose answer
-- alone is used, and each replica reports how often the two agreed.

-- Each shadow started; the newest row with no `ended_at` is running.
-- Replicas follow it by `seq`, woken by NOTIFY taskflow_policy.
CREATE TABLE policy_shadows (
    seq        BIGSERIAL PRIMARY KEY,
    revision   BIGINT NOT NULL REFERENCES policy_revisions (revision),
    -- Unix seconds.
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,
    -- `stopped`, `promoted` or `replaced` (another shadow started).
    outcome    TEXT
);

-- Each replica's comparison counts and most recent disagreements for the
-- shadow it runs (or ran last), as JSON: never a token, password or key.
CREATE TABLE policy_shadow_replicas (
    replica    TEXT PRIMARY KEY,
    shadow_seq BIGINT NOT NULL,
    report     TEXT NOT NULL,
    -- Unix seconds.
    last_seen  BIGINT NOT NULL
);
