//! The request path's layers, one concern each. `http::router` lists them in order.

pub mod audit;
pub mod auth;
pub mod platform_auth;
pub mod request_id;
pub mod security_headers;
pub mod tenant;
