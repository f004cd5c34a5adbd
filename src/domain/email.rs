//! E-mail addresses: a deliberately small check — a local part of RFC 5322 `atext` and dots, an
//! `@`, a dotted domain of ASCII letter, digit, hyphen and underscore labels (underscores: real
//! django-tenants data has them, from schema names; international domains in their `xn--`
//! form), bounded lengths. Deliverability is not
//! ours to prove. The OpenAPI schemas say the same with `EMAIL_PATTERN`'s regular expression.
//!
//! `ImportedEmail` is the importer's wider rule, for addresses a Django project already holds.

use std::fmt;

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// `Email::parse`'s rule as a regular expression, for the OpenAPI document
/// (`pattern = "EMAIL_PATTERN"`, see `http::openapi::resolve_patterns`).
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)+$";

impl Email {
    pub fn parse(raw: &str) -> Result<Email, Invalid> {
        let fail = || Err(Invalid::new("email", "must be a valid e-mail address"));
        let Some((email, local, domain)) = split(raw) else {
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

/// An address as `import schemas` takes it from a Django database: the API's rule before it was
/// narrowed to ASCII — anything but whitespace and control characters in a bounded local part,
/// an `@`, two or more bounded labels without a leading or trailing hyphen — trimmed, otherwise
/// kept as Django stored it. Django accepts (and keeps in Unicode) international domains, and
/// its `create_user` validates nothing; those users must keep logging in with the address they
/// know, and login looks an account up by any text (`auth::sessions::login`), so the importer
/// refuses only what cannot be a login. Every `Email` is an `ImportedEmail`, not the other way
/// round: addresses written through the API afterwards meet `Email::parse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedEmail(String);

impl ImportedEmail {
    pub fn parse(raw: &str) -> Result<ImportedEmail, Invalid> {
        let fail = || Err(Invalid::new("email", "must be an e-mail address without spaces or control characters"));
        let Some((email, local, domain)) = split(raw) else {
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
        Ok(ImportedEmail(email.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address trimmed and split at its last `@` (address, local part, domain), if it is not
/// empty and within RFC 5321's 254 characters; both parsers start here.
fn split(raw: &str) -> Option<(&str, &str, &str)> {
    let email = raw.trim();
    if email.is_empty() || email.len() > 254 {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    Some((email, local, domain))
}

impl fmt::Display for ImportedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

    #[test]
    fn an_import_keeps_what_django_stored_but_not_what_cannot_be_a_login() {
        let api = ["a@b.co", "boss@charlie_co.example", "first.last+tag@sub.example.org", "o'brien@example.com"];
        let django_only =
            ["ü@x.de", "jörg@münchen.example", "用户@例子.广告", "a\"b@c.de", "a@b~c.de", "x@[192.168.0.1]"];
        for ok in api.iter().chain(&django_only) {
            let imported = ImportedEmail::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(imported.as_str(), *ok);
        }
        assert_eq!(ImportedEmail::parse("  Zoë@Example.com\n").expect("trimmed").as_str(), "Zoë@Example.com");
        let long_local = format!("{}@b.co", "a".repeat(65));
        let long = format!("a@{}.co", "b".repeat(260));
        for bad in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a b@c.de",
            "a\tb@c.de",
            "a\u{0}b@c.de",
            "a@c.d\u{7}e",
            "a@b\u{a0}c.de",
            "a@b..c",
            "a@-b.c",
            "a@b-.c",
            "a@@b.co",
            &long_local,
            &long,
        ] {
            assert!(ImportedEmail::parse(bad).is_err(), "{bad:?}");
        }
    }
}
