//! One sled transaction over a pair of trees, shared by the subscriptions (records and
//! event index) and the dead-letter archive (letters and bodies).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::{Error, Result};

/// Runs `f` as one sled transaction over two trees; an abort returns its own error.
pub(crate) fn transact_pair(
    a: &sled::Tree,
    b: &sled::Tree,
    f: impl Fn(
        &TransactionalTree,
        &TransactionalTree,
    ) -> Result<(), ConflictableTransactionError<Error>>,
) -> Result<()> {
    (a, b).transaction(|(a, b)| f(a, b)).map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Sled(e),
    })
}
