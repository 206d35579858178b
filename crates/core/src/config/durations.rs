//! `humantime_serde` handles one duration; the retry schedule is a list of them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list: Vec<humantime_serde::Serde<Duration>> = Vec::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    let list: Vec<humantime_serde::Serde<&Duration>> =
        list.iter().map(humantime_serde::Serde::from).collect();
    list.serialize(s)
}
