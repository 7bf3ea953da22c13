//! Outbound HTTP to addresses customers choose (the `webhook_send` flow action): a
//! client that refuses loopback, private, link-local and other non-public targets unless
//! the operator allows them (SPEC §6). Names are checked after resolution, by the
//! resolver the connection itself uses, so a name cannot resolve to a public address
//! for the check and a private one for the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use actix_tls::connect::{Resolve, Resolver};
use futures_util::future::LocalBoxFuture;

/// A target the policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0} is not a public address")]
pub struct Refused(pub String);

/// The guarded client. Not `Send` (awc is single-threaded): one per arbiter.
#[derive(Clone)]
pub struct Outbound {
    client: awc::Client,
    allow_private: bool,
}

impl Outbound {
    pub fn new(allow_private: bool, timeout: Duration) -> Outbound {
        let connector = awc::Connector::new()
            .connector(
                actix_tls::connect::Connector::new(Resolver::custom(GuardedResolver { allow_private })).service(),
            )
            .timeout(timeout.min(Duration::from_secs(5)));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .add_default_header(("User-Agent", concat!("callplane/", env!("CARGO_PKG_VERSION"))))
            .finish();
        Outbound { client, allow_private }
    }

    /// A request to `uri`, after checking a literal address in it (names are checked
    /// when they are resolved).
    pub fn request(&self, method: awc::http::Method, uri: &str) -> Result<awc::ClientRequest, Refused> {
        let parsed: awc::http::Uri = uri.parse().map_err(|_| Refused(uri.to_owned()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) {
            return Err(Refused(uri.to_owned()));
        }
        let host = parsed.host().unwrap_or_default();
        if !self.allow_private && refused_host(host) {
            return Err(Refused(host.to_owned()));
        }
        Ok(self.client.request(method, uri))
    }
}

/// A literal address (or `localhost`) the policy refuses; names are left to the resolver.
pub fn refused_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip))
}

/// Whether `ip` is an ordinary address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
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
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // Reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // Documentation 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
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
                && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
            {
                return Err(Box::new(Refused(format!("{host} ({})", bad.ip()))) as Box<dyn std::error::Error>);
            }
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_targets_are_refused() {
        for host in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254", "[::1]", "localhost"] {
            assert!(refused_host(host), "{host}");
        }
        for host in ["100.64.0.1", "0.0.0.0", "[fe80::1]", "[fd00::1]", "[::ffff:127.0.0.1]", "api.localhost"] {
            assert!(refused_host(host), "{host}");
        }
        for host in ["93.184.216.34", "[2606:2800:220:1::]", "example.com"] {
            assert!(!refused_host(host), "{host}");
        }
    }
}
