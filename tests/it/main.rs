//! Integration tests: one binary, so one throwaway PostgreSQL cluster serves every test;
//! each test still gets a database of its own (see `support`).

mod support;

mod audit;
mod bad_input;
mod catalog;
mod contacts;
mod isolation_http;
mod isolation_sql;
mod platform;
mod tenant_resolution;
mod transfer;
mod verify;
