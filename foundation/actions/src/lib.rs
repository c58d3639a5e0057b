//! The gatekeeper's contract: what the brain may ask the launcher to do.
//!
//! The core describes a request ([`ActionRequest`]); the launcher checks
//! it again, asks the person (or applies a standing permission), runs it
//! and writes the outcome back ([`ActionState`]). Both sides validate with
//! the same code ([`tools::validate`]), and a decision is bound to the
//! exact arguments that were shown ([`arguments_hash`]).
//!
//! Modules: [`tools`] (names, schemas, tiers, argument checks), [`slash`]
//! (`/note ...` and friends in a chat message), [`record`] (the request and
//! its state as stored in Redis, and the keys).

pub mod record;
pub mod slash;
pub mod tools;

pub use record::{ActionRequest, ActionState, DecidedBy, Source, Status};
pub use tools::{Arguments, InvalidArguments, Tier, Tool, arguments_hash, validate};
