//! One sled transaction over a pair of trees, shared by the subscriptions (records and
//! event index) and the dead-letter archive (letters and bodies).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::{Error, Result};

/// Where the offset of the last change applied from the changes stream is kept.
pub(crate) const APPLIED_OFFSET_KEY: &[u8] = b"changes_applied_offset";

/// A change's offset in the changes stream, written in the same transaction as the change,
/// so that a restart resumes exactly after the last change applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark<'a> {
    /// The tree that keeps the offset.
    pub(crate) tree: &'a sled::Tree,
    /// The change's offset.
    pub(crate) offset: u64,
}

/// Runs `f` as one sled transaction over two trees, with `mark`'s offset when given; an
/// abort returns its own error.
pub(crate) fn transact_pair(
    a: &sled::Tree,
    b: &sled::Tree,
    mark: Option<Mark<'_>>,
    f: impl Fn(
        &TransactionalTree,
        &TransactionalTree,
    ) -> Result<(), ConflictableTransactionError<Error>>,
) -> Result<()> {
    let done = match mark {
        None => (a, b).transaction(|(a, b)| f(a, b)),
        Some(mark) => (a, b, mark.tree).transaction(|(a, b, meta)| {
            f(a, b)?;
            meta.insert(APPLIED_OFFSET_KEY, &mark.offset.to_be_bytes())?;
            Ok(())
        }),
    };
    done.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Sled(e),
    })
}
