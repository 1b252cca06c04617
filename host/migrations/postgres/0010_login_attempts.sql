-- Login attempts counted against the brute-force limits, shared by every
-- replica on this database: one row per attempt and key (`user:NAME` or
-- `address:IP`). A row counts from its reservation (`at_ms`, Unix
-- milliseconds) until the window passes; `failed` is the order number of
-- its failure, NULL while its password is being checked. Rows older than
-- the window no longer count and are deleted every few attempts, so the
-- table holds about one window of attempts, each key at most its limit.
CREATE SEQUENCE login_attempt_seq;

CREATE TABLE login_attempts (
    key     TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    failed  BIGINT,
    PRIMARY KEY (key, attempt)
);

CREATE INDEX login_attempts_by_attempt ON login_attempts (attempt);
CREATE INDEX login_attempts_by_time ON login_attempts (at_ms);
