//! The integration suite: one binary, one module per area.
//!
//! Every test uses the real guest module, real SQLite files in a temporary
//! directory and real HTTP on 127.0.0.1.

#![allow(
    unreachable_pub,
    reason = "test modules share helpers within this one crate"
)]

mod alarms;
mod bundles;
mod capacity;
mod cases;
mod cloudflare;
mod commits;
mod crash;
mod dispatch;
mod embedding;
mod gateway;
mod hostile;
mod images;
mod mailbox;
mod properties;
mod runner;
mod seed;
mod storage;
mod support;
