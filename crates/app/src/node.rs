//! The node's id: `node.id`, or one generated at the first start and kept in the store
//! directory, so that a node keeps its name across restarts (and a wiped store gets a
//! new one).

use std::path::Path;

use hookwire_core::Config;
use hookwire_core::config::is_valid_node_id;

use crate::{Error, Result};

/// The file in `store.path` that keeps a generated id.
const NODE_ID_FILE: &str = "hookwire-node-id";

/// This node's id.
pub fn node_id(config: &Config) -> Result<String> {
    if !config.node.id.is_empty() {
        return Ok(config.node.id.clone());
    }
    kept_or_generated(&config.store.path)
}

fn kept_or_generated(dir: &Path) -> Result<String> {
    let path = dir.join(NODE_ID_FILE);
    let unusable = |e: std::io::Error| {
        Error::Config(format!(
            "node.id is empty and {} cannot be kept: {e}",
            path.display()
        ))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if is_valid_node_id(id) {
                return Ok(id.to_owned());
            }
            Err(Error::Config(format!(
                "{} holds `{id}`, which is not a node id ([A-Za-z0-9._-], 1 to 64): set node.id, or delete the file to generate one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A UUIDv7's last 12 hex digits are random.
            let uuid = uuid::Uuid::now_v7().simple().to_string();
            let id = format!("node-{}", &uuid[20..]);
            std::fs::create_dir_all(dir).map_err(unusable)?;
            std::fs::write(&path, format!("{id}\n")).map_err(unusable)?;
            Ok(id)
        }
        Err(e) => Err(unusable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_kept_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = kept_or_generated(dir.path()).expect("generated");
        assert!(is_valid_node_id(&first), "{first}");
        assert!(first.starts_with("node-"), "{first}");
        assert_eq!(kept_or_generated(dir.path()).expect("kept"), first);
    }

    #[test]
    fn a_kept_id_that_is_not_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(NODE_ID_FILE), "no spaces allowed").expect("write");
        let e = kept_or_generated(dir.path()).expect_err("refused");
        assert!(e.to_string().contains("not a node id"), "{e}");
    }

    #[test]
    fn the_configured_id_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::defaults();
        config.store.path = dir.path().to_owned();
        config.node.id = "api-1".into();
        assert_eq!(node_id(&config).expect("id"), "api-1");
        assert!(!dir.path().join(NODE_ID_FILE).exists());
    }
}
