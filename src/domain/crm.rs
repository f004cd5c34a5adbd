//! Values of organizations and deals: names, web domains, deal stages, money amounts and
//! ISO 4217 currency codes. Each parses once at the edge and is valid from then on.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// `WebDomain::parse`'s rule as a regular expression (either case: `parse` folds it), for the
/// OpenAPI document (`pattern = "WEB_DOMAIN_PATTERN"`, see `http::openapi::resolve_patterns`).
pub const WEB_DOMAIN_PATTERN: &str =
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// `Amount::parse`'s rule as a regular expression, for the OpenAPI document
/// (`pattern = "AMOUNT_PATTERN"`).
pub const AMOUNT_PATTERN: &str = r"^0*[0-9]{1,15}(\.[0-9]{1,4})?$";

/// A display name or title: 1–200 characters after trimming, no control characters.
fn bounded_text(field: &'static str, raw: &str) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if text.chars().count() > 200 {
        return Err(Invalid::new(field, "must be at most 200 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(text.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationName(String);

impl OrganizationName {
    pub fn parse(raw: &str) -> Result<OrganizationName, Invalid> {
        bounded_text("name", raw).map(OrganizationName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealTitle(String);

impl DealTitle {
    pub fn parse(raw: &str) -> Result<DealTitle, Invalid> {
        bounded_text("title", raw).map(DealTitle)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organization's web domain (`example.com`): dotted DNS labels of letters, digits and
/// `-`, lower-cased, no scheme, path or trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebDomain(String);

impl WebDomain {
    pub fn parse(raw: &str) -> Result<WebDomain, Invalid> {
        let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let labels: Vec<&str> = domain.split('.').collect();
        if domain.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
            return Err(Invalid::new("domain", "must be a domain name such as example.com"));
        }
        Ok(WebDomain(domain))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a deal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DealStage {
    Lead,
    Qualified,
    Proposal,
    Won,
    Lost,
}

impl DealStage {
    pub const ALL: [DealStage; 5] =
        [DealStage::Lead, DealStage::Qualified, DealStage::Proposal, DealStage::Won, DealStage::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            DealStage::Lead => "lead",
            DealStage::Qualified => "qualified",
            DealStage::Proposal => "proposal",
            DealStage::Won => "won",
            DealStage::Lost => "lost",
        }
    }

    pub fn parse(raw: &str) -> Result<DealStage, Invalid> {
        DealStage::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| Invalid::new("stage", "must be one of lead, qualified, proposal, won, lost"))
    }
}

/// A non-negative money amount written as a decimal string (`"1250.00"`): up to 15 integer
/// digits and 4 decimals. Never a float, so nothing is rounded on the way to `numeric`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount(String);

impl Amount {
    pub fn parse(raw: &str) -> Result<Amount, Invalid> {
        let fail = || Invalid::new("amount", "must be a decimal string such as \"1250.00\" (at most 4 decimals)");
        let (int, frac) = match raw.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (raw, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f) || f.len() > 4) {
            return Err(fail());
        }
        let int = int.trim_start_matches('0');
        if int.len() > 15 {
            return Err(fail());
        }
        let int = if int.is_empty() { "0" } else { int };
        Ok(Amount(match frac {
            Some(f) => format!("{int}.{f}"),
            None => int.to_string(),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An active ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency([u8; 3]);

/// ISO 4217 alphabetic codes in use (list one, 2024), fund and precious-metal codes excluded.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP \
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF \
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD \
    LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR \
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY \
    TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

impl Currency {
    /// The codes `parse` knows as a regular expression, for the OpenAPI document
    /// (`pattern = "CURRENCY_PATTERN"`): made from the same list, so the two cannot disagree.
    pub fn pattern() -> String {
        format!("^({})$", ISO_4217.split_whitespace().collect::<Vec<_>>().join("|"))
    }

    pub fn parse(raw: &str) -> Result<Currency, Invalid> {
        let code = raw.trim().to_ascii_uppercase();
        let known = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) && ISO_4217.contains(&code);
        match code.as_bytes() {
            &[a, b, c] if known => Ok(Currency([a, b, c])),
            _ => Err(Invalid::new("currency", "must be an ISO 4217 currency code such as EUR or USD")),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters get in (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_decimal_strings() {
        let table =
            [("0", Some("0")), ("1250.00", Some("1250.00")), ("007.5", Some("7.5")), ("0.1234", Some("0.1234"))];
        for (raw, expected) in table {
            assert_eq!(Amount::parse(raw).ok().as_ref().map(Amount::as_str), expected, "{raw:?}");
        }
        for bad in ["", "-1", "1.", ".5", "1.23456", "1e3", "1,000", " 1", "NaN", "1234567890123456"] {
            assert!(Amount::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currencies_are_iso_4217_codes() {
        assert_eq!(Currency::parse("eur").map(|c| c.as_str().to_string()), Ok("EUR".to_string()));
        for bad in ["", "EU", "EURO", "XYZ", "E R", "€", "SD ", "D E"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domains_and_stages_parse() {
        assert_eq!(WebDomain::parse("Example.COM.").map(|d| d.0), Ok("example.com".to_string()));
        for bad in ["localhost", "https://example.com", "a..b", "-a.com", "ex ample.com"] {
            assert!(WebDomain::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DealStage::parse("won"), Ok(DealStage::Won));
        assert!(DealStage::parse("Won").is_err());
    }
}
