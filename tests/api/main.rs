//! Integration tests: the real `taskflow` binary with the real policy
//! component, on a fresh SQLite file each (or a fresh PostgreSQL database
//! each, under `scripts/with-postgres`), over real HTTP on 127.0.0.1.

mod harness;

mod command_effects;
mod contention;
mod credentials;
mod decision_cache;
mod docs;
mod fleet;
mod hostile_tokens;
mod interop;
mod introspect;
mod keys;
mod lifecycle;
mod limits;
mod metadata;
mod operations;
mod protected;
mod refresh;
mod revoke;
mod rollout;
mod sandbox;
mod shadow;
mod shadowing;
mod signing;
mod slow_clients;
mod swap;
mod tasks;
mod throttle;
mod token;
mod usernames;
