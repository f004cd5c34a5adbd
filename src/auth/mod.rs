//! Credentials: argon2id password hashing kept off the async runtime, and the JWT signing
//! and verification keys. No HTTP here; the layers and routes call into it.

pub mod jwt;
pub mod password;
pub mod refresh;
pub mod sessions;
pub mod user_state;

pub use jwt::{AccessClaims, JwtKeys, TokenError};
pub use password::PasswordHasher;
