//! Why a filter is refused.

use std::fmt;

/// Why a filter is refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based line of the error, when it has a place.
    pub line: Option<u32>,
    /// 1-based column (in characters), when it has a place.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FilterError {}
