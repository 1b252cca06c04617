//! TaskFlow: a task API whose whole authentication policy runs in a
//! WebAssembly component.
//!
//! - [`config`]: command line, environment and config file: the commands,
//!   the option groups (one per subsystem) each takes, the settings derived
//!   from them, and the signing secret.
//! - [`application`]: the server as a value, built (storage, policy,
//!   listener) then run until the shutdown it is handed, owning its
//!   background tasks; [`startup`]: opening storage and loading the policy
//!   (after checking, on a first start, what can be checked before
//!   anything is written), and `taskflow serve` with the process's signals.
//! - [`server`]: connections and their limits; [`app`]: state, router and
//!   middleware; [`hardening`]: what every request is held to (a deadline
//!   for its body, its `Host`) and the security headers of every answer;
//!   [`routes`]: the handlers; [`form`]: the form bodies of `/token` and
//!   `/revoke`; [`openapi`]: the API document and the docs page.
//! - [`auth`]: the Bearer check each protected route declares.
//! - [`policy`]: the component, behind one door (wasmtime lives there only):
//!   async calls, their deadlines and share of the machine, reused instances,
//!   signatures of candidates, Bearer decisions remembered until
//!   anything they depend on changes, and a candidate shadowing the active
//!   policy (deciding live traffic off the request's path, only compared).
//! - [`reload`], [`admin`]: what swaps the policy while serving (file watch,
//!   SIGHUP, the admin socket behind `taskflow auth reload`);
//!   [`rollout`]: the revision the database names as desired, followed by
//!   every replica (`taskflow auth deploy`), the shadowing candidate
//!   (`taskflow auth shadow`), and each replica's heartbeat.
//! - [`storage`]: users, tasks, tokens and keys in SQLite or PostgreSQL,
//!   with the change log that keeps each server's in-memory token status
//!   current; [`task`]: the task model.
//! - [`refresh`]: refresh tokens (single use, rotated, reuse revokes the
//!   family).
//! - [`keys`]: the signing key ring (its schedule, sealing, JWKS and the
//!   task that follows it).
//! - [`error`]: every error answer, mapped in one place.
//! - [`throttle`]: brute-force limits on `/token` in memory, and
//!   [`login_limits`]: those limits for the deployment (in the database on
//!   PostgreSQL).
//! - [`metrics`]: what is counted, for `GET /metrics`; [`telemetry`]: logs;
//!   [`report`]: an error as the one line an operator reads.
//! - [`commands`]: the one command the binary runs: `serve` (by way of
//!   [`startup`]), `user ...`, `keys ...`, `auth ...` and `config ...`;
//!   [`username`]: usernames in RFC 8265's canonical form, and the least a
//!   password is.
//! - [`files`]: files private to this user (secrets, caches);
//!   [`clock`]: the wall clock in Unix seconds.
//!
//! Only what the binary (`main.rs`) and the benchmarks use is public:
//! [`config`], [`commands`], [`telemetry`], [`report`], [`policy`] and
//! [`keys`], and [`application`], which the integration tests start in
//! their own process.

mod admin;
mod app;
pub mod application;
mod auth;
mod clock;
pub mod commands;
pub mod config;
mod error;
mod files;
mod form;
mod hardening;
pub mod keys;
mod login_limits;
mod metrics;
mod openapi;
pub mod policy;
mod refresh;
mod reload;
pub mod report;
mod rollout;
mod routes;
mod server;
mod startup;
mod storage;
mod task;
pub mod telemetry;
mod throttle;
mod username;
