//! TaskFlow: a task API whose whole authentication policy runs in a
//! WebAssembly component.
//!
//! - [`config`]: command line, environment, the signing secret.
//! - [`startup`]: opening storage, loading the policy, serving.
//! - [`server`]: connections and their limits; [`app`]: state, router and
//!   middleware; [`hardening`]: what every request is held to (a deadline
//!   for its body, its `Host`) and the security headers of every answer;
//!   [`routes`]: the handlers;
//!   [`openapi`]: the API document and the docs page.
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
//! - [`error`]: every error answer, mapped in one place.
//! - [`throttle`]: brute-force limits on `/token` in memory, and
//!   [`login_limits`]: those limits for the deployment (in the database on
//!   PostgreSQL); [`keys`]: the signing
//!   key ring and its rotation.
//! - [`metrics`]: what is counted, for `GET /metrics`; [`telemetry`]: logs.
//! - [`commands`]: `taskflow user ...` and `taskflow auth ...`;
//!   [`username`]: usernames in RFC 8265's canonical form, and the least
//!   a password is.

pub mod admin;
pub mod app;
pub mod auth;
pub mod commands;
pub mod config;
pub mod error;
pub mod files;
pub mod form;
pub mod hardening;
pub mod keys;
pub mod login_limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod refresh;
pub mod reload;
pub mod rollout;
pub mod routes;
pub mod server;
pub mod startup;
pub mod storage;
pub mod task;
pub mod telemetry;
pub mod throttle;
pub mod username;
