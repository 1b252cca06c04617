-- A token names its user, and a name can be removed and added again: tokens
-- issued to the earlier account must not pass for the new one's. So an
-- account's cutoff (`tokens_revoked_through`, Unix seconds: tokens issued
-- at or before it are refused) also covers its creation: `user add` sets
-- it to the second before, or to the second of a removal of the name in
-- that same second. Accounts made before this migration get their creation
-- second, read from `created_at` (RFC 3339).
UPDATE users
SET tokens_revoked_through = GREATEST(
    tokens_revoked_through,
    FLOOR(EXTRACT(EPOCH FROM created_at::timestamptz))::BIGINT
)
WHERE created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T';
