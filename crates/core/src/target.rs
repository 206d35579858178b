//! The target policy: which webhook URLs and addresses hookwire may connect to.
//!
//! Webhook URLs come from users, so by default hookwire refuses every address that is not
//! on the public internet (SSRF). The same policy runs when a webhook is created or
//! updated, on literal IPs before each attempt, and on every address a DNS name resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// The longest target URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a target URL or address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a URL at all.
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// Not `http` or `https`.
    #[error("URL scheme `{0}` is not http or https")]
    Scheme(String),
    /// Has a user name or password, which would be sent to every receiver's logs.
    #[error("URL must not contain credentials")]
    Credentials,
    /// Has no host.
    #[error("URL has no host")]
    NoHost,
    /// The address lies in a refused range. The message names the range only: it reaches
    /// API clients, and the addresses a name resolves to would map the internal network
    /// for them. `Debug` and [`TargetError::refused_addr`] keep the address for logs.
    #[error("the target's address is refused: {range} addresses are not allowed")]
    RefusedAddress {
        /// The refused address.
        addr: IpAddr,
        /// The range it falls in, e.g. `private (RFC 1918)`.
        range: &'static str,
    },
    /// In loopback-only mode, every host name but `localhost` is refused before any DNS query.
    #[error("host `{0}` is refused: only the allowed CIDRs may be targeted")]
    RefusedHost(String),
}

impl TargetError {
    /// The refused address, for the server's log.
    pub fn refused_addr(&self) -> Option<IpAddr> {
        match self {
            Self::RefusedAddress { addr, .. } => Some(*addr),
            _ => None,
        }
    }
}

/// Which targets are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow every special-purpose range (dev and test only).
    pub allow_private_targets: bool,
    /// Ranges allowed even though they are special-purpose.
    pub allowed_cidrs: Vec<IpNet>,
    /// Allow nothing but `allowed_cidrs` (and `localhost`, which resolves into them).
    pub only_allowed_cidrs: bool,
}

impl TargetPolicy {
    /// Loopback-only mode, the policy of every test and benchmark.
    pub fn loopback_only() -> Self {
        Self {
            allow_private_targets: false,
            allowed_cidrs: vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).expect("valid prefix"),
                IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid prefix"),
            ],
            only_allowed_cidrs: true,
        }
    }

    /// Checks a URL's shape and, when its host is a literal IP, the address. A host name
    /// still has to pass [`TargetPolicy::check_addr`] for every address it resolves to.
    pub fn check_url(&self, text: &str) -> Result<Url, TargetError> {
        if text.len() > MAX_URL_LEN {
            return Err(TargetError::TooLong);
        }
        // The WHATWG parser normalises integer, octal and hex IPv4 spellings to dotted quads.
        let url = Url::parse(text).map_err(|e| TargetError::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        match url.host() {
            None => return Err(TargetError::NoHost),
            Some(Host::Ipv4(ip)) => self.check_addr(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_addr(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => self.check_host_name(name)?,
        }
        Ok(url)
    }

    /// Refuses a host name before any DNS query when only allowed ranges may be targeted.
    pub fn check_host_name(&self, name: &str) -> Result<(), TargetError> {
        let name = name.trim_end_matches('.');
        if self.only_allowed_cidrs && !name.eq_ignore_ascii_case("localhost") {
            return Err(TargetError::RefusedHost(name.to_owned()));
        }
        Ok(())
    }

    /// Checks one address, as literal or as resolved.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), TargetError> {
        let addr = canonical(addr);
        if self.allowed_cidrs.iter().any(|net| net.contains(&addr)) {
            return Ok(());
        }
        if self.only_allowed_cidrs {
            return Err(TargetError::RefusedAddress {
                addr,
                range: "outside the allowed CIDRs",
            });
        }
        if self.allow_private_targets {
            return Ok(());
        }
        match special_range(addr) {
            Some(range) => Err(TargetError::RefusedAddress { addr, range }),
            None => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address it maps.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The special-purpose range an address falls in, if any (IANA special-purpose registries).
pub fn special_range(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 8, "this network / unspecified"),
        ([10, 0, 0, 0], 8, "private (RFC 1918)"),
        ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
        ([172, 16, 0, 0], 12, "private (RFC 1918)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private (RFC 1918)"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (includes broadcast)"),
    ];
    let bits = u32::from(ip);
    RANGES.iter().find_map(|(net, len, name)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u32::from_be_bytes(*net) & mask).then_some(*name)
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let within = |net: u128, len: u32| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        bits & mask == net & mask
    };
    let embedded_v4 = |shift: u32| Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // NAT64 and 6to4 addresses reach the IPv4 address they embed: judge that one.
    if within(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return special_v4(embedded_v4(0));
    }
    if within(0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return special_v4(embedded_v4(80));
    }
    const RANGES: &[(u128, u32, &str)] = &[
        (
            0x0000_0000_0000_0000_0000_0000_0000_0000,
            96,
            "IPv4-compatible (deprecated)",
        ),
        (
            0x0064_ff9b_0001_0000_0000_0000_0000_0000,
            48,
            "local-use NAT64",
        ),
        (
            0x0100_0000_0000_0000_0000_0000_0000_0000,
            64,
            "discard-only",
        ),
        (
            0x2001_0db8_0000_0000_0000_0000_0000_0000,
            32,
            "documentation",
        ),
        (
            0x2001_0000_0000_0000_0000_0000_0000_0000,
            23,
            "IETF protocol assignments (incl. Teredo)",
        ),
        (
            0x3fff_0000_0000_0000_0000_0000_0000_0000,
            20,
            "documentation",
        ),
        (
            0xfc00_0000_0000_0000_0000_0000_0000_0000,
            7,
            "unique local (ULA)",
        ),
        (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, "link-local"),
        (
            0xfec0_0000_0000_0000_0000_0000_0000_0000,
            10,
            "site-local (deprecated)",
        ),
        (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, "multicast"),
    ];
    if let Some(name) = RANGES
        .iter()
        .find_map(|(net, len, name)| within(*net, *len).then_some(*name))
    {
        return Some(name);
    }
    // Only 2000::/3 is allocated as global unicast (IANA IPv6 address space); the rest
    // that no range above names (`4000::/3`, `5f00::/16`, `::ffff:0:0:0/96`…) is reserved.
    if !within(0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return Some("reserved (outside global unicast 2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests;
