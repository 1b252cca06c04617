//! Integration tests: the real `taskflow` binary with the real policy
//! component, on a fresh SQLite file each, over real HTTP on 127.0.0.1.

mod harness;

mod docs;
mod interop;
mod lifecycle;
mod protected;
mod sandbox;
mod swap;
mod tasks;
mod token;
