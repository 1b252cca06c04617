-- Which algorithm a signing key is for: `HS256` (a shared secret) or `EdDSA`
-- (an Ed25519 seed, whose public half is published). Keys stored before
-- there was a choice are HS256.
ALTER TABLE signing_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'HS256';
