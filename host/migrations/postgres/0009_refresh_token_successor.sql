-- The token that replaced a used refresh token (its digest). Within the
-- refresh reuse grace, the used token presented again supersedes that
-- successor with a fresh one, so a family never has more than one token
-- left to use.
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
