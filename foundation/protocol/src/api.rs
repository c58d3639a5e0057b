//! The JSON error body of every core endpoint:
//! `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`unauthorized`, `not_found`, ...).
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}
