//! Where webhooks may go. A webhook is a request the server makes on a customer's
//! behalf, so without a guard any customer could make it reach the server's own
//! loopback, the private network behind it or a cloud metadata address (SSRF).
//!
//! Targets are checked twice: at creation, an address written in the URI; at delivery,
//! every address its host name resolves to, inside the HTTP client's own resolver, so
//! that the address vetted is the address connected to (no window for DNS rebinding).
//! `CALLPLANE_WEBHOOK_ALLOW_PRIVATE=true` turns both off, for tests and development.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures_util::future::LocalBoxFuture;

/// Why an address is not a public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    Multicast,
    Documentation,
    Reserved,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blocked::Loopback => "loopback",
            Blocked::Private => "private",
            Blocked::LinkLocal => "link-local",
            Blocked::Unspecified => "unspecified",
            Blocked::Multicast => "multicast",
            Blocked::Documentation => "documentation",
            Blocked::Reserved => "reserved",
        })
    }
}

/// `None` for a public unicast address; otherwise what it is.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Some(Blocked::Unspecified),
        (10, _, _) | (192, 168, _) => Some(Blocked::Private),
        (172, 16..=31, _) => Some(Blocked::Private),
        // Shared address space (carrier-grade NAT): private to the provider.
        (100, 64..=127, _) => Some(Blocked::Private),
        (127, _, _) => Some(Blocked::Loopback),
        // Includes the cloud metadata service at 169.254.169.254.
        (169, 254, _) => Some(Blocked::LinkLocal),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some(Blocked::Documentation),
        // IETF protocol assignments, the 6to4 relay anycast, benchmarking.
        (192, 0, 0) | (192, 88, 99) | (198, 18..=19, _) => Some(Blocked::Reserved),
        (224..=239, _, _) => Some(Blocked::Multicast),
        // Class E and the broadcast address.
        (240..=255, _, _) => Some(Blocked::Reserved),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    // `::ffff:127.0.0.1` reaches 127.0.0.1.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s[0] {
        // NAT64 (64:ff9b::/96) translates to the IPv4 address in its last 32 bits.
        0x0064 if s[1..6] == [0xff9b, 0, 0, 0, 0] => classify_v4(embedded(s[6], s[7])),
        // Local-use NAT64 (64:ff9b:1::/48).
        0x0064 if s[1] == 0xff9b && s[2] == 1 => Some(Blocked::Private),
        0x2001 if s[1] == 0x0db8 => Some(Blocked::Documentation),
        // IETF protocol assignments (Teredo, benchmarking, ORCHID …): 2001::/23.
        0x2001 if s[1] < 0x0200 => Some(Blocked::Reserved),
        // 6to4 carries an IPv4 address in bits 16..48.
        0x2002 => classify_v4(embedded(s[1], s[2])),
        0x3fff if s[1] < 0x1000 => Some(Blocked::Documentation),
        x if x & 0xfe00 == 0xfc00 => Some(Blocked::Private),
        x if x & 0xffc0 == 0xfe80 => Some(Blocked::LinkLocal),
        x if x & 0xff00 == 0xff00 => Some(Blocked::Multicast),
        // Global unicast is 2000::/3; everything else is reserved (IPv4-compatible
        // `::a.b.c.d`, discard-only `100::/64`, site-local `fec0::/10` …).
        x if x & 0xe000 == 0x2000 => None,
        _ => Some(Blocked::Reserved),
    }
}

/// A target the guard refused: the delivery fails without being sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {host} is {addr}, a {class} address")]
pub struct Refused {
    pub host: String,
    pub addr: IpAddr,
    pub class: Blocked,
}

/// Checks a webhook URI for creation and returns it normalised (the form stored and
/// used for every delivery). Host names are not resolved here: what a name resolves to
/// is checked at each delivery.
pub fn check_uri(raw: &str, allow_private: bool) -> Result<String, String> {
    if raw.len() > 2048 {
        return Err("at most 2048 characters".to_owned());
    }
    let mut url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URI: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URI are not supported".to_owned());
    }
    url.set_fragment(None);
    if !allow_private {
        literal_target(&url).map_err(|refused| {
            format!("{} is a {} address; webhooks may reach only public addresses", refused.addr, refused.class)
        })?;
    }
    if url.host().is_none() {
        return Err(format!("{raw:?}: a host is required"));
    }
    Ok(url.into())
}

/// The delivery-time check of a URI whose host is an address (a name is checked by the
/// resolver instead).
pub fn check_literal(uri: &str) -> Result<(), Refused> {
    match url::Url::parse(uri) {
        Ok(url) => literal_target(&url),
        // Stored URIs were parsed at creation; the client will report anything else.
        Err(_) => Ok(()),
    }
}

fn literal_target(url: &url::Url) -> Result<(), Refused> {
    let addr = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    match classify(addr) {
        Some(class) => Err(Refused { host: addr.to_string(), addr, class }),
        None => Ok(()),
    }
}

/// The webhook client's DNS resolver: resolves as the system does, then refuses the
/// whole host if any of its addresses is not public (unless private targets are allowed).
pub(crate) struct GuardedResolver {
    pub allow_private: bool,
}

impl actix_tls::connect::Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((bare, port)).await?.collect(),
            };
            if !self.allow_private
                && let Some((addr, class)) = addrs.iter().find_map(|a| classify(a.ip()).map(|c| (a.ip(), c)))
            {
                return Err(Box::new(Refused { host: bare.to_owned(), addr, class }) as Box<dyn std::error::Error>);
            }
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<Blocked> {
        classify(ip.parse().expect("an address"))
    }

    #[test]
    fn ipv4_ranges() {
        let cases = [
            ("127.0.0.1", Some(Blocked::Loopback)),
            ("127.255.0.9", Some(Blocked::Loopback)),
            ("10.1.2.3", Some(Blocked::Private)),
            ("172.16.0.1", Some(Blocked::Private)),
            ("172.31.255.255", Some(Blocked::Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Blocked::Private)),
            ("100.64.0.1", Some(Blocked::Private)),
            ("100.128.0.1", None),
            ("169.254.169.254", Some(Blocked::LinkLocal)),
            ("0.0.0.0", Some(Blocked::Unspecified)),
            ("224.0.0.1", Some(Blocked::Multicast)),
            ("239.255.255.250", Some(Blocked::Multicast)),
            ("192.0.2.10", Some(Blocked::Documentation)),
            ("198.51.100.7", Some(Blocked::Documentation)),
            ("203.0.113.200", Some(Blocked::Documentation)),
            ("198.18.0.1", Some(Blocked::Reserved)),
            ("240.0.0.1", Some(Blocked::Reserved)),
            ("255.255.255.255", Some(Blocked::Reserved)),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_and_embedded_ipv4() {
        let cases = [
            ("::1", Some(Blocked::Loopback)),
            ("::", Some(Blocked::Unspecified)),
            ("::ffff:127.0.0.1", Some(Blocked::Loopback)),
            ("::ffff:10.0.0.1", Some(Blocked::Private)),
            ("::ffff:169.254.169.254", Some(Blocked::LinkLocal)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::7f00:1", Some(Blocked::Loopback)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some(Blocked::Loopback)),
            ("2002:808:808::", None),
            ("fe80::1", Some(Blocked::LinkLocal)),
            ("fc00::1", Some(Blocked::Private)),
            ("fd12:3456::1", Some(Blocked::Private)),
            ("ff02::1", Some(Blocked::Multicast)),
            ("2001:db8::1", Some(Blocked::Documentation)),
            ("3fff::1", Some(Blocked::Documentation)),
            ("2001::1", Some(Blocked::Reserved)),
            ("::127.0.0.1", Some(Blocked::Reserved)),
            ("100::1", Some(Blocked::Reserved)),
            ("fec0::1", Some(Blocked::Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:81c::200e", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn creation_checks_literal_addresses_and_normalises() {
        assert_eq!(check_uri("https://example.com/hook#x", false).as_deref(), Ok("https://example.com/hook"));
        assert_eq!(check_uri("HTTP://Example.COM", false).as_deref(), Ok("http://example.com/"));
        for bad in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://10.0.0.1/",
            "ftp://example.com/",
            "example.com/hook",
            "http://user:pw@example.com/",
            "",
        ] {
            assert!(check_uri(bad, false).is_err(), "{bad}");
        }
        // Names are resolved at delivery, not here.
        assert!(check_uri("http://localhost:9000/", false).is_ok());
        assert!(check_uri("http://127.0.0.1:9000/", true).is_ok());
    }

    #[actix_rt::test]
    async fn the_resolver_refuses_names_of_private_addresses() {
        use actix_tls::connect::Resolve;
        let strict = GuardedResolver { allow_private: false };
        let err = strict.lookup("localhost", 80).await.expect_err("localhost is loopback");
        let refused = err.downcast_ref::<Refused>().expect("a Refused");
        assert_eq!(refused.class, Blocked::Loopback);
        assert!(strict.lookup("[::1]", 80).await.is_err());
        let open = GuardedResolver { allow_private: true };
        let addrs = open.lookup("127.0.0.1", 8080).await.expect("allowed");
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 8080))]);
    }
}
