//! The event catalog: which event types exist and which payload fields each one carries.
//!
//! The catalog is data (`config/events.toml`), so adding an event type never touches code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The catalog compiled into the binary: `config/events.toml`.
pub const BUILTIN_CATALOG_TOML: &str = include_str!("../../../config/events.toml");

/// Event type names are routing keys and appear in URLs, so they stay plain.
const MAX_NAME_LEN: usize = 64;

/// One event type: its name (the routing key and the body's `event` field) and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventType {
    /// The event's name, e.g. `report_run_completed`.
    pub name: String,
    /// What happened, for people reading the catalog.
    pub description: String,
    /// The string fields every body of this type must carry besides `event`.
    pub fields: Vec<String>,
    /// Emitted by hookwire itself about its own deliveries (`webhook_disabled`,
    /// `delivery_dead_lettered`).
    #[serde(default)]
    pub operational: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    event: Vec<EventType>,
}

/// The set of known event types, looked up by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: BTreeMap<String, EventType>,
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn builtin() -> Self {
        // A unit test parses the embedded file, so this cannot fail in a released build.
        Self::from_toml(BUILTIN_CATALOG_TOML).expect("the embedded catalog is valid")
    }

    /// Parses and validates a catalog written in the `events.toml` format.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| Error::Catalog(e.message().to_owned()))?;
        let mut types = BTreeMap::new();
        for event_type in file.event {
            validate_event_type(&event_type)?;
            let name = event_type.name.clone();
            if types.insert(name.clone(), event_type).is_some() {
                return Err(Error::Catalog(format!(
                    "event type `{name}` is listed twice"
                )));
            }
        }
        if types.is_empty() {
            return Err(Error::Catalog("no event types".into()));
        }
        Ok(Self { types })
    }

    /// The event type called `name`, if the catalog has it.
    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.types.get(name)
    }

    /// Every event type, in name order.
    pub fn types(&self) -> impl Iterator<Item = &EventType> {
        self.types.values()
    }

    /// Every event type's name, in order, joined for error messages.
    pub fn names_joined(&self) -> String {
        self.types
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether `name` is usable as an event type or field name: `[a-z0-9_]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn validate_event_type(event_type: &EventType) -> Result<()> {
    let name = &event_type.name;
    if !is_valid_name(name) {
        return Err(Error::Catalog(format!(
            "event type `{name}` is not [a-z0-9_]{{1,64}}"
        )));
    }
    for field in &event_type.fields {
        if !is_valid_name(field) || field == "event" {
            return Err(Error::Catalog(format!(
                "event type `{name}` has an invalid field `{field}`"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_modes_eight_event_types() {
        let catalog = Catalog::builtin();
        let operational: Vec<&str> = catalog
            .types()
            .filter(|t| t.operational)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(operational, ["delivery_dead_lettered", "webhook_disabled"]);
        let fields: Vec<(&str, &str)> = catalog
            .types()
            .filter(|t| !t.operational)
            .map(|t| (t.name.as_str(), t.fields[0].as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("definition_created", "definition_url"),
                ("definition_updated", "definition_url"),
                ("member_joined_organization", "member_url"),
                ("member_removed_from_organization", "member_url"),
                ("new_database_connection", "connection_url"),
                ("report_created", "report_run_url"),
                ("report_run_completed", "report_run_url"),
                ("report_run_started", "report_run_url"),
            ]
        );
    }

    #[test]
    fn rejects_duplicates_bad_names_and_unknown_keys() {
        let dup = "[[event]]\nname='a'\ndescription=''\nfields=['x']\n[[event]]\nname='a'\ndescription=''\nfields=['y']";
        assert!(matches!(Catalog::from_toml(dup), Err(Error::Catalog(m)) if m.contains("twice")));
        let bad = "[[event]]\nname='A b'\ndescription=''\nfields=['x']";
        assert!(Catalog::from_toml(bad).is_err());
        let field_event = "[[event]]\nname='a'\ndescription=''\nfields=['event']";
        assert!(Catalog::from_toml(field_event).is_err());
        let unknown = "[[event]]\nname='a'\ndescription=''\nfields=[]\ncolour='red'";
        assert!(Catalog::from_toml(unknown).is_err());
        assert!(Catalog::from_toml("").is_err());
    }
}
