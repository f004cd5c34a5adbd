//! Tenant slugs: one DNS label, so `{slug}.{base_domain}` is always a valid host name.

use std::fmt;

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

/// `Slug::parse`'s rule as a regular expression (either case: `parse` folds it), for the OpenAPI
/// document (`pattern = "SLUG_PATTERN"`, see `http::openapi::resolve_patterns`).
pub const SLUG_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

impl Slug {
    /// RFC 1123 label in lower case: 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
    /// Upper case is folded, since host names are case-insensitive.
    pub fn parse(raw: &str) -> Result<Slug, Invalid> {
        let slug = raw.trim().to_ascii_lowercase();
        let fail = |m: &str| Err(Invalid::new("slug", m));
        if slug.is_empty() || slug.len() > 63 {
            return fail("must be 1 to 63 characters");
        }
        if !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return fail("may contain only letters, digits and '-'");
        }
        if slug.starts_with('-') || slug.ends_with('-') {
            return fail("must not start or end with '-'");
        }
        Ok(Slug(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels() {
        for ok in ["acme", "t0001", "a-b", "ACME", "x"] {
            assert!(Slug::parse(ok).is_ok(), "{ok} should parse");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "a-", "a.b", "a_b", "ümlaut", "a b", long.as_str(), "';--"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Slug::parse("AcMe").map(|s| s.0), Ok("acme".to_string()));
    }
}
