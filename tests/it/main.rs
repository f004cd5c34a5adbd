//! Integration tests: one binary, so one throwaway PostgreSQL cluster serves every test;
//! each test still gets a database of its own (see `support`).

mod support;

mod audit;
mod bad_input;
mod catalog;
mod contacts;
mod crm;
mod import;
mod isolation_http;
mod isolation_sql;
mod isolation_tables;
mod permissions;
mod platform;
mod sessions;
mod tenant_resolution;
mod transfer;
mod users;
mod verify;
