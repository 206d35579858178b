//! One module per command family: its subcommands and flags, what it does, what it prints.
//! `serve` is the daemon itself, in `crate::serve`.

pub mod access_tokens;
pub mod admin;
pub mod attempts;
pub mod dead_letters;
pub mod event_types;
pub mod publish;
pub mod store;
pub mod store_restore;
pub mod topology;
pub mod verify;
pub mod webhooks;
