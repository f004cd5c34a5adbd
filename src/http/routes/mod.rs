//! One file per resource. Each handler parses its input into domain types, does its work in
//! one tenant transaction with the SQL in plain sight, and maps the result.

pub mod audit;
pub mod audit_export;
pub mod audit_keys;
pub mod audit_log;
pub mod auth;
pub mod contacts;
pub mod data;
pub mod deals;
pub mod health;
pub mod jwks;
pub mod me;
pub mod metrics;
pub mod organizations;
pub mod platform;
pub mod users;
pub mod webhooks;

/// Reads every pooled connection prepares when it opens (`Database::connect`).
pub const HOT_STATEMENTS: &[crate::db::HotStatement] = &[contacts::GET_CONTACT, contacts::LIST_CONTACTS];
