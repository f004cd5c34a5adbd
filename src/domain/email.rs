//! E-mail addresses: a deliberately small check — a local part of RFC 5322 `atext` and dots, an
//! `@`, a dotted domain of ASCII letter, digit, hyphen and underscore labels (underscores: real
//! django-tenants data has them, from schema names; international domains in their `xn--`
//! form), bounded lengths. Deliverability is not
//! ours to prove. The OpenAPI schemas say the same with `EMAIL_PATTERN`'s regular expression.

use std::fmt;

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// `Email::parse`'s rule as a regular expression, for the OpenAPI schemas (`#[schema(pattern)]`
/// needs the literal; a test checks each copy is this one).
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)+$";

impl Email {
    pub fn parse(raw: &str) -> Result<Email, Invalid> {
        let email = raw.trim();
        let fail = || Err(Invalid::new("email", "must be a valid e-mail address"));
        if email.is_empty() || email.len() > 254 {
            return fail();
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return fail();
        };
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
        if local.is_empty() || local.len() > 64 || !local.chars().all(atext) {
            return fail();
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return fail();
        }
        Ok(Email(email.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_refuses_the_rest() {
        for ok in [
            "a@b.co",
            "boss@charlie_co.example",
            "owner@acme.test",
            "first.last+tag@sub.example.org",
            "o'brien@example.com",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a b@c.de",
            "a@b..c",
            "a@-b.c",
            "a@@b.co",
            "a@b*.co",
            "ü@x.de",
            "a\"b@c.de",
            "a@b~c.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
