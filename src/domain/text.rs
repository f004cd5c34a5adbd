//! Bounded free-text fields and new passwords.

use super::Invalid;

/// The rule of display names and titles (`ContactName`, `OrganizationName`, `DealTitle`,
/// `TenantName`) as a regular expression, for the OpenAPI document (`pattern = "TEXT_PATTERN"`,
/// see `http::openapi::resolve_patterns`): no control characters, one that is not a space. The
/// 200-character bound is the schemas' `max_length`.
pub const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// `Phone::parse`'s rule as a regular expression, for the OpenAPI document
/// (`pattern = "PHONE_PATTERN"`); the 40-character bound is the schemas' `max_length`.
pub const PHONE_PATTERN: &str = r"^[ +()./-]*[0-9][ +()./-]*[0-9][ +()./-]*[0-9][0-9 +()./-]*$";

/// A contact's display name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactName(String);

impl ContactName {
    pub fn parse(raw: &str) -> Result<ContactName, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("name", "is required"));
        }
        if name.chars().count() > 200 {
            return Err(Invalid::new("name", "must be at most 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new("name", "must not contain control characters"));
        }
        Ok(ContactName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number as people write it: digits and `+ ( ) - . /` and spaces, 3–40 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Phone, Invalid> {
        let phone = raw.trim();
        let allowed = |c: char| c.is_ascii_digit() || " +()-./".contains(c);
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if !(3..=40).contains(&phone.len()) || !phone.chars().all(allowed) || digits < 3 {
            return Err(Invalid::new("phone", "must be 3 to 40 characters of digits, spaces and + ( ) - . /"));
        }
        Ok(Phone(phone.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password being set: 8 to 256 characters, kept whole (never truncated).
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<NewPassword, Invalid> {
        let n = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(Invalid::new("password", "must be 8 to 256 characters"));
        }
        Ok(NewPassword(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_bounded_but_never_truncated() {
        assert!(NewPassword::parse("short").is_err());
        let sixty_four = "p".repeat(64);
        assert_eq!(NewPassword::parse(&sixty_four).map(|p| p.expose().len()).ok(), Some(64));
        assert!(NewPassword::parse(&"p".repeat(257)).is_err());
    }

    #[test]
    fn names_and_phones_are_bounded() {
        assert!(ContactName::parse("  ").is_err());
        assert!(ContactName::parse(&"n".repeat(201)).is_err());
        assert!(ContactName::parse("Ada Lovelace").is_ok());
        assert!(Phone::parse("+44 (20) 7946-0958").is_ok());
        assert!(Phone::parse("call me").is_err());
    }
}
