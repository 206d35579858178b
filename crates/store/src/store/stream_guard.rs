//! What each replication stream's reader took last from each writer's session
//! (`hookwire_amqp::envelope`), kept in the `replication` tree so that a restarted reader
//! still refuses a copy of an entry it applied before. One small row per stream, writer
//! node and session (a session per process start): nothing to prune, and none is pruned,
//! because a stream's retention drops whole segments only, so an old session's entries
//! may outlive its `x-max-age`.

use super::*;

/// Rows of this module start with this, which no other key of the tree does.
const PREFIX: &[u8] = b"stream-guard\0";

/// The last sequence a reader took from one writer's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSession {
    /// The writer's node.
    pub node: String,
    /// The writer's session.
    pub session: Uuid,
    /// The last sequence taken.
    pub seq: u64,
}

fn key(stream: &str, node: &str, session: &Uuid) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(node.as_bytes());
    key.push(0);
    key.extend_from_slice(session.as_bytes());
    key
}

fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

impl Store {
    /// Every writer session the reader of `stream` (`changes`, `attempts`, `payloads`)
    /// took something from, with the last sequence it took.
    pub fn stream_sessions(&self, stream: &str) -> Result<Vec<StreamSession>> {
        let prefix = stream_prefix(stream);
        let mut sessions = Vec::new();
        for row in self.replication.scan_prefix(&prefix) {
            let (key, value) = row?;
            let corrupt = || Error::Corrupt("a stream guard row".into());
            let rest = &key[prefix.len()..];
            let split = rest.len().checked_sub(17).ok_or_else(corrupt)?;
            let (node, session) = rest.split_at(split);
            let session = session.strip_prefix(&[0]).ok_or_else(corrupt)?;
            sessions.push(StreamSession {
                node: String::from_utf8(node.to_vec()).map_err(|_| corrupt())?,
                session: Uuid::from_slice(session).map_err(|_| corrupt())?,
                seq: <[u8; 8]>::try_from(value.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt())?,
            });
        }
        Ok(sessions)
    }

    /// Notes that the reader of `stream` took `seq` from `node`'s `session`. Not flushed
    /// here: the next flush of the store carries it.
    pub fn note_stream_session(
        &self,
        stream: &str,
        node: &str,
        session: &Uuid,
        seq: u64,
    ) -> Result<()> {
        self.replication
            .insert(key(stream, node, session), &seq.to_be_bytes())?;
        Ok(())
    }
}
