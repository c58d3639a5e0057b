//! The command layer: what each `jarvis` subcommand prints, for people
//! and (`--json`) for scripts. It calls the operations below it and is
//! imported by nothing but `main`.

pub mod approvals;
pub mod client;
pub mod data;
pub mod info;
pub mod models;
pub mod uninstall;
pub mod update;
