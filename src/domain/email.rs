//! E-mail addresses: a deliberately small check (one `@`, a dotted domain, no spaces or
//! control characters, bounded length). Deliverability is not ours to prove.

use std::fmt;

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

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
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@';
        if local.is_empty() || local.len() > 64 || local.chars().any(bad_char) {
            return fail();
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || domain.chars().any(bad_char) {
            return fail();
        }
        if labels.iter().any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-')) {
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
        for ok in ["a@b.co", "owner@acme.test", "first.last+tag@sub.example.org"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@b..c", "a@-b.c", "a@@b.co"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
