-- Signing keys made by `taskflow keys rotate`, shared by every replica. The
-- secret is sealed (XChaCha20-Poly1305) under a key derived from the
-- signing secret, with the kid as associated data. Times are Unix seconds.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    sealed       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Signs from then on (verifies from creation).
    activates_at BIGINT NOT NULL,
    -- Signs no more from then on; verifies until every token it signed has expired.
    retired_at   BIGINT
);
