//! rowguard: a multi-tenant HTTP API whose tenant isolation is enforced by PostgreSQL
//! Row-Level Security. The binary in `main.rs` is a thin CLI over this library.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod data;
pub mod db;
pub mod domain;
pub mod http;
pub mod import;
pub mod jobs;
pub mod key_file;
pub mod limits;
pub mod log_writer;
pub mod metrics;
pub mod migrate;
pub mod platform;
pub mod roles;
pub mod seed;
pub mod startup;
