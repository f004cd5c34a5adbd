//! Integration tests: one binary, so one throwaway PostgreSQL cluster serves every test;
//! each test still gets a database of its own (see `support`).

mod support;

mod abuse;
mod adopt;
mod audit;
mod audit_export;
mod audit_tree;
mod bad_input;
mod catalog;
mod citus_plan;
mod cli_concurrency;
mod console;
mod contacts;
mod cors;
mod crm;
mod data_api;
mod database_faults;
mod hostile_input;
mod import;
mod import_all_tables;
mod isolation_http;
mod isolation_sql;
mod isolation_tables;
mod logs;
mod metrics;
mod openapi;
mod permissions;
mod platform;
mod rate_limits;
mod request_shape;
mod service_limits;
mod sessions;
mod tenant_resolution;
mod transfer;
mod users;
mod verify;
