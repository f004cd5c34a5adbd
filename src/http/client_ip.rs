//! The client's IP address: the socket peer, or what X-Forwarded-For / Forwarded say when —
//! and only when — the peer is a configured proxy (ROWGUARD_TRUSTED_PROXIES). Reads headers
//! only. Computed once per request, into the request's context (`http::context::ClientAddr`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName, header};
use ipnet::IpNet;

/// Addresses and networks whose forwarding headers we believe. Empty (the default): none,
/// so a client cannot choose its own address by sending X-Forwarded-For.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request that came from `peer` with `headers`. Proxies append
    /// the address they received from, so the list is read from the right: the first address
    /// that is not a trusted proxy is the client. Anything unreadable stops the walk at the
    /// last hop we can vouch for, so garbage cannot pick an address either.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.contains(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }
}

/// Parse `ROWGUARD_TRUSTED_PROXIES` items: a network (`10.0.0.0/8`) or a single address.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a network such as 10.0.0.0/8"))
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack socket reports) as plain IPv4, so
/// one client has one address whichever way it connected.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The hops a forwarding header lists, left (client) to right (nearest proxy); `None` for an
/// entry that is not an address (`unknown`, an obfuscated `_id`, garbage). `Forwarded`
/// (RFC 7239) wins over `X-Forwarded-For` when both are present.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &HeaderName| -> Option<String> {
        let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        (!parts.is_empty()).then(|| parts.join(","))
    };
    if let Some(forwarded) = values(&header::FORWARDED) {
        return forwarded
            .split(',')
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
            })
            .collect();
    }
    match values(&HeaderName::from_static("x-forwarded-for")) {
        Some(list) => list.split(',').map(|hop| parse_node(hop.trim())).collect(),
        None => Vec::new(),
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse::<Ipv6Addr>().ok()).map(|ip| canonical(ip.into()));
    }
    node.parse::<SocketAddr>().ok().map(|addr| canonical(addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).expect("name"), value.parse().expect("value"));
        }
        map
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(vec![
            parse_trusted_proxy("10.0.0.0/8").expect("net"),
            parse_trusted_proxy("192.0.2.7").expect("ip"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // (peer, headers, expected client)
        type Headers<'a> = Vec<(&'a str, &'a str)>;
        let table: Vec<(&str, Headers, &str)> = vec![
            ("203.0.113.9", vec![("x-forwarded-for", "1.2.3.4")], "203.0.113.9"),
            ("203.0.113.9", vec![("forwarded", "for=1.2.3.4")], "203.0.113.9"),
            ("10.1.1.1", vec![], "10.1.1.1"),
            ("10.1.1.1", vec![("x-forwarded-for", "1.2.3.4")], "1.2.3.4"),
            ("10.1.1.1", vec![("x-forwarded-for", "6.6.6.6, 1.2.3.4")], "1.2.3.4"),
            ("10.1.1.1", vec![("x-forwarded-for", "1.2.3.4, 10.9.9.9")], "1.2.3.4"),
            ("10.1.1.1", vec![("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "1.2.3.4")], "1.2.3.4"),
            ("10.1.1.1", vec![("x-forwarded-for", "1.2.3.4, garbage")], "10.1.1.1"),
            ("10.1.1.1", vec![("x-forwarded-for", "10.2.2.2, 192.0.2.7")], "10.2.2.2"),
            ("192.0.2.7", vec![("x-forwarded-for", "1.2.3.4:5678")], "1.2.3.4"),
            ("10.1.1.1", vec![("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")], "2001:db8::1"),
            ("10.1.1.1", vec![("forwarded", "for=6.6.6.6, for=1.2.3.4;by=10.1.1.1")], "1.2.3.4"),
            ("10.1.1.1", vec![("forwarded", "for=unknown")], "10.1.1.1"),
            ("10.1.1.1", vec![("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "6.6.6.6")], "1.2.3.4"),
            ("::ffff:10.1.1.1", vec![("x-forwarded-for", "::ffff:1.2.3.4")], "1.2.3.4"),
        ];
        for (peer, pairs, expected) in table {
            assert_eq!(proxies.client_ip(ip(peer), &headers(&pairs)), ip(expected), "{peer} {pairs:?}");
        }
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client_ip(ip("10.1.1.1"), &headers(&[("x-forwarded-for", "1.2.3.4")])), ip("10.1.1.1"));
        assert!(parse_trusted_proxy("not an address").is_err());
    }
}
