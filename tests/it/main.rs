//! End-to-end tests of the real `jarvis` and `jarvis-core` binaries with a
//! real `redis-server`, each in its own temporary `JARVIS_HOME`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

mod brain;
mod core_alone;
mod download;
mod gate;
mod installers;
mod lifecycle;
mod migrations;
mod models;
mod packs;
mod persistence;
mod release;
mod security;
mod server;
mod supervision;
mod torture;
mod ui;
mod updates;
mod windows_installers;
