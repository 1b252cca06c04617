-- Every change that can turn a valid access token invalid, in commit order:
-- replicas and the server behind the CLI follow it to keep their in-memory
-- token status current. Rows are pruned an hour after they were written.
CREATE TABLE auth_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- A user added, removed, given a new password or new scopes.
    username   TEXT,
    -- An access token revoked, until its `exp` (Unix seconds).
    jti        TEXT,
    expires_at BIGINT,
    -- Unix seconds.
    changed_at BIGINT NOT NULL
);

CREATE INDEX auth_changes_by_time ON auth_changes (changed_at);
