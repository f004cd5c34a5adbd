//! The request path's layers, one concern each. `http::router` lists them in order.

pub mod audit;
pub mod auth;
pub mod cors;
pub mod observe;
pub mod platform_auth;
pub mod rate_limit;
pub mod request_id;
pub mod request_shape;
pub mod security_headers;
pub mod tenant;
