//! The request path's layers, one concern each. `http::router` lists them in order.

pub mod audit;
pub mod auth;
pub mod cors;
pub mod edge;
pub mod gate;
pub mod observe;
pub mod platform_auth;
pub mod rate_limit;
pub mod request_id;
pub mod request_shape;
pub mod security_headers;
pub mod tenant;

/// What only a layer can hand over: this module and its children can make one (the field is
/// private), handlers cannot. Making a request context, setting its tenant or principal and
/// recording a refusal through the door take one, so a handler cannot make a context that
/// names another tenant, nor write into another tenant's audit log.
#[derive(Debug, Clone, Copy)]
pub struct LayersOnly(());

/// The one value of `LayersOnly`, for the layers below.
const LAYERS_ONLY: LayersOnly = LayersOnly(());
