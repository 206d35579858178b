//! The target policy: arbitrary strings never panic, every spelling of an address in a
//! refused range is refused, and loopback-only mode accepts nothing but loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookwire_core::target::special_range;
use hookwire_core::{TargetError, TargetPolicy};
use ipnet::{IpNet, Ipv6Net};
use proptest::prelude::*;
use url::{Host, Url};

/// The IPv4 ranges the issue names as refused, written out independently of the policy.
const REFUSED_V4: &[&str] = &[
    "0.0.0.0/8",       // this network, unspecified
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // CGNAT
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast
];

/// The IPv6 ranges refused in their own right.
const REFUSED_V6: &[&str] = &[
    "::/128",         // unspecified
    "::1/128",        // loopback
    "::/96",          // IPv4-compatible
    "64:ff9b:1::/48", // local-use NAT64
    "100::/64",       // discard-only
    "2001::/23",      // IETF protocol assignments, Teredo
    "2001:db8::/32",  // documentation
    "3fff::/20",      // documentation
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "fec0::/10",      // site-local
    "ff00::/8",       // multicast
    "4000::/2",       // reserved: outside 2000::/3
    "1000::/4",       // reserved: outside 2000::/3
];

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter()
        .map(|n| n.parse().expect("test CIDR parses"))
        .collect()
}

/// An address somewhere inside `net`.
fn inside(net: IpNet, bits: u128) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = u32::from(n.hostmask()) & bits as u32;
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let host = u128::from(n.hostmask()) & bits;
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

fn refused_v4() -> impl Strategy<Value = Ipv4Addr> {
    (prop::sample::select(nets(REFUSED_V4)), any::<u128>()).prop_map(|(net, bits)| {
        match inside(net, bits) {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => unreachable!("an IPv4 range"),
        }
    })
}

fn refused_v6() -> impl Strategy<Value = Ipv6Addr> {
    (prop::sample::select(nets(REFUSED_V6)), any::<u128>()).prop_map(|(net, bits)| {
        match inside(net, bits) {
            IpAddr::V6(ip) => ip,
            IpAddr::V4(_) => unreachable!("an IPv6 range"),
        }
    })
}

/// The ways a URL can name one IPv4 address, `style` choosing one.
fn spell_v4(ip: Ipv4Addr, style: u8) -> String {
    let [a, b, c, d] = ip.octets();
    let int = u32::from(ip);
    match style % 10 {
        0 => ip.to_string(),
        1 => int.to_string(),
        2 => format!("0x{int:x}"),
        3 => format!("0{int:o}"),
        4 => format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        5 => format!("0x{a:X}.{b}.0{c:o}.{d}"),
        6 => format!("{a}.{}", u32::from_be_bytes([0, b, c, d])),
        7 => format!("[::ffff:{ip}]"),
        8 => format!("[::ffff:{:x}:{:x}]", int >> 16, int & 0xffff),
        _ => format!("{ip}."),
    }
}

/// An IPv6 form that reaches the IPv4 address `ip`: NAT64 or 6to4.
fn embed_v4(ip: Ipv4Addr, six_to_four: bool, low: u64) -> Ipv6Addr {
    let int = u128::from(u32::from(ip));
    Ipv6Addr::from(if six_to_four {
        (0x2002u128 << 112) | (int << 80) | u128::from(low)
    } else {
        (0x0064_ff9bu128 << 96) | int
    })
}

fn url_with_host(host: &str, tail: &str) -> String {
    format!("http://{host}{tail}")
}

fn tail() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        (1u16.., "[a-z0-9/?=&%._-]{0,20}").prop_map(|(port, path)| format!(":{port}/{path}")),
    ]
}

/// Hosts of every kind: names near `localhost`, loopback and other spellings, anything.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("localhost".to_owned()),
        "(?i)localhost\\.{0,3}",
        "[a-z0-9.-]{0,12}localhost[a-z0-9.-]{0,12}",
        "[a-zA-Z0-9%.-]{1,30}",
        (any::<u32>(), any::<u8>()).prop_map(|(ip, style)| spell_v4(Ipv4Addr::from(ip), style)),
        (refused_v4(), any::<u8>()).prop_map(|(ip, style)| spell_v4(ip, style)),
        any::<u128>().prop_map(|ip| format!("[{}]", Ipv6Addr::from(ip))),
        refused_v6().prop_map(|ip| format!("[{ip}]")),
        "\\PC{0,20}",
        ".{0,20}",
    ]
}

/// Strings that look like URLs, or partly do.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http://",
        "https://",
        "HTTP://",
        "ftp://",
        "http:",
        "http:/",
        "http:\\\\",
        "//",
        "",
    ]);
    let userinfo = prop_oneof![
        4 => Just(""),
        1 => Just("user@"),
        1 => Just("user:pw@"),
        1 => Just(":@"),
    ];
    prop_oneof![
        (scheme, userinfo, host(), tail())
            .prop_map(|(scheme, user, host, tail)| format!("{scheme}{user}{host}{tail}")),
        any::<String>(),
        ".{0,60}",
    ]
}

fn is_loopback_target(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

fn policies() -> [TargetPolicy; 3] {
    [
        TargetPolicy::default(),
        TargetPolicy::loopback_only(),
        TargetPolicy {
            allow_private_targets: true,
            ..TargetPolicy::default()
        },
    ]
}

/// Whether the list refuses `addr`: a model of the policy written independently.
fn listed_as_refused(addr: IpAddr) -> bool {
    let v4_listed = |ip: Ipv4Addr| nets(REFUSED_V4).iter().any(|n| n.contains(&IpAddr::V4(ip)));
    let ip = match addr {
        IpAddr::V4(ip) => return v4_listed(ip),
        IpAddr::V6(ip) => ip,
    };
    let bits = u128::from(ip);
    let within = |net: &str| net.parse::<Ipv6Net>().expect("CIDR").contains(&ip);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        v4_listed(mapped)
    } else if within("64:ff9b::/96") {
        v4_listed(Ipv4Addr::from(bits as u32))
    } else if within("2002::/16") {
        v4_listed(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        nets(REFUSED_V6).iter().any(|n| n.contains(&addr)) || !within("2000::/3")
    }
}

/// Any address, with the IPv6 forms that embed an IPv4 address well represented.
fn any_addr() -> impl Strategy<Value = IpAddr> {
    let v4 = prop_oneof![any::<u32>().prop_map(Ipv4Addr::from), refused_v4()];
    prop_oneof![
        v4.clone().prop_map(IpAddr::V4),
        any::<u128>().prop_map(|ip| IpAddr::V6(Ipv6Addr::from(ip))),
        // Global unicast, where most of the public IPv6 internet is.
        any::<u128>().prop_map(|ip| IpAddr::V6(Ipv6Addr::from((ip >> 3) | (1 << 125)))),
        refused_v6().prop_map(IpAddr::V6),
        v4.clone().prop_map(|ip| IpAddr::V6(ip.to_ipv6_mapped())),
        (v4, any::<bool>(), any::<u64>()).prop_map(|(ip, six_to_four, low)| IpAddr::V6(embed_v4(
            ip,
            six_to_four,
            low
        ))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::CASES))]

    #[test]
    fn arbitrary_strings_never_panic(text in url_like()) {
        for policy in policies() {
            if let Ok(url) = policy.check_url(&text) {
                prop_assert!(matches!(url.scheme(), "http" | "https"));
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert!(url.host().is_some());
                // What was accepted is accepted again as normalised.
                prop_assert_eq!(policy.check_url(url.as_str()).map(|_| ()), Ok(()));
            }
        }
    }

    #[test]
    fn every_spelling_of_a_refused_v4_address_is_refused(
        ip in refused_v4(),
        style in any::<u8>(),
        tail in tail(),
    ) {
        let url = url_with_host(&spell_v4(ip, style), &tail);
        prop_assert_eq!(
            TargetPolicy::default().check_url(&url).map(|_| ()),
            Err(TargetError::RefusedAddress {
                addr: IpAddr::V4(ip),
                range: special_range(IpAddr::V4(ip)).expect("a refused range"),
            }),
            "{}", url
        );
    }

    #[test]
    fn nat64_and_6to4_forms_of_refused_v4_addresses_are_refused(
        ip in refused_v4(),
        six_to_four in any::<bool>(),
        low in any::<u64>(),
    ) {
        let url = format!("https://[{}]/", embed_v4(ip, six_to_four, low));
        prop_assert!(TargetPolicy::default().check_url(&url).is_err(), "{}", url);
    }

    #[test]
    fn every_refused_v6_address_is_refused(ip in refused_v6(), tail in tail()) {
        let url = url_with_host(&format!("[{ip}]"), &tail);
        prop_assert!(
            matches!(
                TargetPolicy::default().check_url(&url),
                Err(TargetError::RefusedAddress { .. })
            ),
            "{}", url
        );
    }

    #[test]
    fn every_spelling_of_any_v4_address_gets_the_same_verdict(
        ip in any::<u32>().prop_map(Ipv4Addr::from),
        style in any::<u8>(),
    ) {
        let policy = TargetPolicy::default();
        let url = url_with_host(&spell_v4(ip, style), "/");
        prop_assert_eq!(
            policy.check_url(&url).map(|_| ()),
            policy.check_addr(IpAddr::V4(ip)),
            "{}", url
        );
    }

    #[test]
    fn loopback_only_mode_accepts_only_loopback(text in url_like()) {
        if let Ok(url) = TargetPolicy::loopback_only().check_url(&text) {
            prop_assert!(is_loopback_target(&url), "{} became {}", text, url);
        }
    }

    #[test]
    fn loopback_only_mode_accepts_only_loopback_addresses(ip in any::<u128>(), v4 in any::<bool>()) {
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::from(ip as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(ip))
        };
        let loopback = match addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        };
        prop_assert_eq!(TargetPolicy::loopback_only().check_addr(addr).is_ok(), loopback);
    }

    #[test]
    fn the_default_policy_refuses_exactly_the_listed_ranges(addr in any_addr()) {
        prop_assert_eq!(
            TargetPolicy::default().check_addr(addr).is_err(),
            listed_as_refused(addr),
            "{}", addr
        );
    }
}
