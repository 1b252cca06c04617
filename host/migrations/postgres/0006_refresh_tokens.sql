-- Refresh tokens (RFC 6749 §6), stored as the SHA-256 of the opaque token:
-- the token itself is never stored. Each use marks the token used and adds
-- its successor to the same family; a used token presented again revokes the
-- whole family, and the access tokens issued with it. Times are Unix seconds.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family     TEXT NOT NULL,
    username   TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    -- Space-separated: the scopes of the password grant that began the family.
    scopes     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- No token of the family is valid past this: the login's absolute lifetime.
    family_expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT,
    -- The access token issued together with this refresh token (`jti`,
    -- `exp`): revoked with the family.
    access_jti        TEXT,
    access_expires_at BIGINT
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (username);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
