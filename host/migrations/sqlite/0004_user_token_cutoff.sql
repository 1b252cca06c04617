-- Tokens of the user issued (`iat`) at or before this Unix second are
-- revoked: set by a password change. 0: none.
ALTER TABLE users ADD COLUMN tokens_revoked_through BIGINT NOT NULL DEFAULT 0;
