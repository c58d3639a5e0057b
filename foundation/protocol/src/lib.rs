//! The contract between the Jarvis launcher, `jarvis-core` and their clients.
//!
//! Plain types and constants; its one piece of I/O is reading a model
//! pointer file ([`models::read_pointer`]), so the launcher and the core
//! read `active` the same way. It holds:
//! - [`env`]: every environment variable any Jarvis binary reads, each with
//!   its meaning. Nothing else in the workspace spells a variable name.
//! - [`instance`]: `<data>/run/instance.json`, what a running launcher
//!   publishes for clients (`jarvis status`, `jarvis stop`, the UI).
//! - [`health`]: the JSON bodies of the core's `/healthz` and `/readyz`.
//! - [`api`]: the JSON error body every core endpoint uses.
//! - [`models`]: the layout of installed models the core reads.
//! - [`events`]: the JSON events on Redis pub/sub.
//!
//! Changing a type here is a wire-format change: the snapshot tests in
//! `jarvis-tests` make it a visible diff.

pub mod api;
pub mod env;
pub mod events;
pub mod health;
pub mod instance;
pub mod models;
