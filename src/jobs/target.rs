//! Where a webhook may point (SSRF). Outside development a target is an `https://` URL whose
//! host resolves to public addresses only: not loopback, private, link-local (cloud metadata
//! lives at 169.254.169.254), shared, multicast, documentation or otherwise special ranges,
//! in IPv4 or IPv6 (IPv4-mapped addresses judged by their IPv4 part). The rule is checked when a
//! subscription is made or changed (a clear 422) and again for every address a delivery
//! connects to (`delivery::GuardedResolver`), so a name that later resolves somewhere private
//! (DNS rebinding) still gets nowhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The longest target URL kept (sql/V25 checks the same).
pub const MAX_URL: usize = 2048;

/// Why a target URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not valid: {0}")]
    Malformed(String),
    #[error("webhook URLs must use https:// (http:// only in development)")]
    NotHttps,
    #[error("a webhook URL may not carry a user name or password; sign with the webhook's secret instead")]
    Credentials,
    #[error("{0} is not a public address; webhooks may not target loopback, private or link-local networks")]
    LocalAddress(IpAddr),
    #[error("{0} does not resolve to any address")]
    Unresolved(String),
    /// The address is not named: a tenant must not learn what internal names resolve to.
    #[error(
        "{0} resolves to an address that is not public; webhooks may not target loopback, private or link-local networks"
    )]
    ResolvesLocal(String),
    #[error("the URL is longer than {MAX_URL} characters")]
    TooLong,
}

/// A target URL that passed the rules not needing DNS: scheme, no credentials, a literal
/// address (if it is one) public.
pub fn parse(text: &str, allow_local: bool) -> Result<Url, TargetError> {
    if text.len() > MAX_URL {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(text).map_err(|e| TargetError::Malformed(e.to_string()))?;
    // The stored form (what the database's length check sees) may be longer than the text given
    // (percent-encoding).
    if url.as_str().len() > MAX_URL {
        return Err(TargetError::TooLong);
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        "http" => return Err(TargetError::NotHttps),
        other => {
            return Err(TargetError::Malformed(format!("scheme {other}: only https:// (and http:// in development)")));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(TargetError::Malformed("a fragment is never sent; leave it out".into()));
    }
    match url.host() {
        None => return Err(TargetError::Malformed("no host".into())),
        Some(Host::Ipv4(ip)) if !allow_local && !is_public(IpAddr::V4(ip)) => {
            return Err(TargetError::LocalAddress(IpAddr::V4(ip)));
        }
        Some(Host::Ipv6(ip)) if !allow_local && !is_public(IpAddr::V6(ip)) => {
            return Err(TargetError::LocalAddress(IpAddr::V6(ip)));
        }
        _ => {}
    }
    Ok(url)
}

/// `parse`, then resolve a host name and refuse it if any address it has is not public (one
/// private address among public ones would let a rebinding resolver choose it later).
pub async fn check(text: &str, allow_local: bool) -> Result<Url, TargetError> {
    let url = parse(text, allow_local)?;
    if allow_local {
        return Ok(url);
    }
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<_> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| TargetError::Unresolved(name.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::Unresolved(name.to_string()));
        }
        if addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(TargetError::ResolvesLocal(name.to_string()));
        }
    }
    Ok(url)
}

/// Whether an address is on the public internet (globally routable unicast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), v6.segments()) {
            (Some(v4), _) => is_public_v4(v4),
            // ::ffff:0:a.b.c.d (SIIT translated): judged by its IPv4 part.
            (None, [0, 0, 0, 0, 0xffff, 0, hi, lo]) => {
                is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            }
            (None, _) => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64: an IPv4 address inside
        || first == 0x2002 // 6to4: likewise
        || first == 0x2001 && ip.segments()[1] == 0 // Teredo: likewise
        || ip.to_ipv4().is_some()) // IPv4-compatible (::a.b.c.d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "::ffff:0:7f00:1",
            "2001:0:4136:e378::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} counted as public");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} counted as local");
        }
    }

    #[test]
    fn urls_outside_development_must_be_https_public_and_credential_free() {
        assert_eq!(parse("http://example.com/hook", false), Err(TargetError::NotHttps));
        assert!(parse("http://example.com/hook", true).is_ok());
        assert_eq!(parse("https://user:pw@example.com/", false), Err(TargetError::Credentials));
        assert!(matches!(parse("https://127.0.0.1/", false), Err(TargetError::LocalAddress(_))));
        assert!(matches!(parse("https://[::1]:8443/", false), Err(TargetError::LocalAddress(_))));
        assert!(matches!(parse("ftp://example.com/", true), Err(TargetError::Malformed(_))));
        assert!(matches!(parse("not a url", true), Err(TargetError::Malformed(_))));
        assert!(parse("https://hooks.example.com/in?x=1", false).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(parse(&long, true), Err(TargetError::TooLong));
    }
}
