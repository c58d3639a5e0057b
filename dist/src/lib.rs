//! Release tooling for Jarvis.
//!
//! It will own (issue "Signed delta updates of the app bundle"): the
//! `jarvis-dist` binary with `keygen`, `bundle` and `release`; the signed
//! `release.json` manifest types shared with the launcher's updater; and the
//! per-file delta patches between releases. Nothing here runs on a user's
//! machine.
