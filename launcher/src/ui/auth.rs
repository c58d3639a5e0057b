//! Who may use the UI: one-time sign-in codes traded for session cookies.
//!
//! A code is random, used once and short-lived; it travels in the URL the
//! launcher prints and opens, so it is traded at once for a session id in
//! an `HttpOnly; SameSite=Strict` cookie and the browser is redirected to
//! `/`, leaving nothing reusable in the address bar or history. Sessions
//! live in memory: a restarted launcher signs everyone out (the next
//! launch opens a fresh sign-in URL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

use crate::secrets::random_hex;

/// How long a sign-in code can be used.
pub const CODE_LIFETIME: Duration = Duration::from_secs(120);

/// How long a session lasts without being used.
pub const SESSION_IDLE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// At most this many unused codes are kept (each `jarvis open` makes one).
const MAX_CODES: usize = 64;

/// Codes and sessions.
#[derive(Debug, Default)]
pub struct Auth {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Code → when it was made.
    codes: HashMap<String, Instant>,
    /// Session id → last use.
    sessions: HashMap<String, Instant>,
}

impl Auth {
    /// A fresh single-use code.
    pub fn new_code(&self) -> String {
        let code = random_hex(32);
        let mut inner = self.lock();
        let now = Instant::now();
        inner
            .codes
            .retain(|_, made| now.duration_since(*made) < CODE_LIFETIME);
        if inner.codes.len() >= MAX_CODES
            && let Some(oldest) = inner
                .codes
                .iter()
                .min_by_key(|(_, made)| **made)
                .map(|(c, _)| c.clone())
        {
            inner.codes.remove(&oldest);
        }
        inner.codes.insert(code.clone(), now);
        code
    }

    /// Trades a code for a new session id; `None` for an unknown, used or
    /// expired code. A code is consumed even when it has expired.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let mut inner = self.lock();
        let made = inner.codes.remove(code)?;
        if made.elapsed() >= CODE_LIFETIME {
            return None;
        }
        let session = random_hex(32);
        inner.sessions.insert(session.clone(), Instant::now());
        Some(session)
    }

    /// Whether `session` is a live session (and marks it used).
    pub fn check_session(&self, session: &str) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        inner
            .sessions
            .retain(|_, used| now.duration_since(*used) < SESSION_IDLE_LIFETIME);
        // Compare in constant time; the map lookup alone would leak
        // nothing useful either, since ids are 256-bit random.
        let found = inner
            .sessions
            .keys()
            .find(|known| bool::from(known.as_bytes().ct_eq(session.as_bytes())))
            .cloned();
        match found {
            Some(id) => {
                inner.sessions.insert(id, now);
                true
            }
            None => false,
        }
    }

    /// Ends a session (sign out).
    pub fn end_session(&self, session: &str) {
        self.lock().sessions.remove(session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps in a state
        // that is unsafe to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let auth = Auth::default();
        let code = auth.new_code();
        let session = auth.redeem(&code);
        assert!(session.is_some());
        assert!(auth.check_session(session.as_deref().unwrap_or_default()));
        assert_eq!(auth.redeem(&code), None, "a replayed code gets nothing");
    }

    #[test]
    fn unknown_codes_and_sessions_are_refused() {
        let auth = Auth::default();
        assert_eq!(auth.redeem("nope"), None);
        assert_eq!(auth.redeem(""), None);
        assert!(!auth.check_session(""));
        assert!(!auth.check_session("0123"));
    }

    #[test]
    fn an_expired_code_is_refused_and_consumed() {
        let auth = Auth::default();
        let code = auth.new_code();
        if let Some(made) = auth.lock().codes.get_mut(&code) {
            *made -= CODE_LIFETIME;
        }
        assert_eq!(auth.redeem(&code), None);
        assert!(auth.lock().codes.is_empty());
    }

    #[test]
    fn an_ended_session_is_refused() {
        let auth = Auth::default();
        let session = auth.redeem(&auth.new_code()).unwrap_or_default();
        auth.end_session(&session);
        assert!(!auth.check_session(&session));
    }

    #[test]
    fn codes_are_capped() {
        let auth = Auth::default();
        let first = auth.new_code();
        for _ in 0..MAX_CODES {
            auth.new_code();
        }
        assert!(auth.lock().codes.len() <= MAX_CODES);
        assert_eq!(auth.redeem(&first), None, "the oldest code made way");
    }
}
