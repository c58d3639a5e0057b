//! The updater: signed, delta-based updates of the app bundle with an
//! atomic switch and a health-checked commit. Its modules, bottom-up:
//! [`state`] (what is remembered), [`feed`] (where releases come from),
//! [`check`] (the acceptance policy), [`stage`] (building a version
//! folder), [`switch`] (moving `current`), [`trial`] (a new version's
//! tries, commit or rollback, driven by `jarvis up`), [`self_update`] and
//! [`background`].
//!
//! Check: fetch `release.json` and its signature (size-bounded), verify the
//! signature over the raw bytes *before* parsing, then require: our target
//! and channel, a version strictly newer than the highest ever accepted
//! (anti-rollback), not expired (freeze defence), a launcher new enough, a
//! version not rejected before, and our staged-rollout bucket.
//! Apply: build `resources/app/.staging-<v>/` from deltas against the
//! current version where offered, full files otherwise (all through the
//! shared verifying downloader), verify every file, rename it to
//! `resources/app/<v>/`, record the pending commit, then switch `current`.
//! The next `jarvis up` gives the new version up to three tries to reach
//! ready; if it never does, it switches back and rejects that version.

pub mod background;
pub mod check;
pub mod feed;
pub mod self_update;
pub mod stage;
pub mod state;
pub mod switch;
pub mod trial;

pub use background::stage_in_background;
pub use check::check;
pub use feed::Feed;
pub use stage::stage;
pub use state::UpdateState;
pub use switch::{activate, apply_staged};
