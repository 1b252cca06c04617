-- Access tokens revoked before their expiry (RFC 7009), by `jti`. Rows are
-- pruned once the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    -- Unix seconds: the token's `exp`.
    expires_at BIGINT NOT NULL
);

CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
