use super::*;

fn default_policy() -> TargetPolicy {
    TargetPolicy::default()
}

fn refused(policy: &TargetPolicy, url: &str) -> bool {
    policy.check_url(url).is_err()
}

#[test]
fn refuses_every_special_range_by_default() {
    let refused_addrs = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.255.255",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.255",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "100::1",
        "2001:db8::1",
        "2001::1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
    ];
    for a in refused_addrs {
        let addr: IpAddr = a.parse().expect("test address parses");
        assert!(
            default_policy().check_addr(addr).is_err(),
            "{a} must be refused"
        );
    }
    let public = [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::",
    ];
    for a in public {
        let addr: IpAddr = a.parse().expect("test address parses");
        assert!(
            default_policy().check_addr(addr).is_ok(),
            "{a} must be allowed"
        );
    }
}

#[test]
fn tricky_spellings_of_refused_addresses() {
    let p = default_policy();
    for url in [
        "http://2130706433/",      // 127.0.0.1 as an integer
        "http://0x7f000001/",      // hex
        "http://0177.0.0.1/",      // octal
        "http://0x7f.1/",          // mixed short form
        "http://127.1/",           // short form
        "http://[::ffff:7f00:1]/", // IPv4-mapped IPv6
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://0/",
        "http://[::]:80/",
        "http://169.254.169.254./",
        "http://3232235777/", // 192.168.1.1
    ] {
        assert!(refused(&p, url), "{url} must be refused");
    }
}

#[test]
fn url_shape_rules() {
    let p = TargetPolicy {
        allow_private_targets: true,
        ..TargetPolicy::default()
    };
    assert_eq!(
        p.check_url("ftp://example.com/"),
        Err(TargetError::Scheme("ftp".into()))
    );
    assert_eq!(
        p.check_url("http://user:pw@example.com/"),
        Err(TargetError::Credentials)
    );
    assert_eq!(
        p.check_url("http://user@example.com/"),
        Err(TargetError::Credentials)
    );
    assert!(matches!(
        p.check_url("not a url"),
        Err(TargetError::Invalid(_))
    ));
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert_eq!(p.check_url(&long), Err(TargetError::TooLong));
    assert!(p.check_url("https://example.com/hook?x=1").is_ok());
    assert!(p.check_url("http://10.1.2.3:8080/").is_ok());
}

#[test]
fn allowlist_opens_exceptions() {
    let p = TargetPolicy {
        allowed_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        ..TargetPolicy::default()
    };
    assert!(p.check_addr("10.1.2.3".parse().expect("ip")).is_ok());
    assert!(p.check_addr("10.2.0.1".parse().expect("ip")).is_err());
    assert!(p.check_addr("8.8.8.8".parse().expect("ip")).is_ok());
}

#[test]
fn loopback_only_mode_refuses_everything_else_before_dns() {
    let p = TargetPolicy::loopback_only();
    assert!(p.check_url("http://127.0.0.1:9/").is_ok());
    assert!(p.check_url("http://127.5.6.7:9/").is_ok());
    assert!(p.check_url("http://[::1]:9/").is_ok());
    assert!(p.check_url("http://localhost:9/").is_ok());
    assert!(p.check_url("http://LOCALHOST.:9/").is_ok());
    assert_eq!(
        p.check_url("http://example.com/"),
        Err(TargetError::RefusedHost("example.com".into()))
    );
    assert!(p.check_url("http://localhost.example.com/").is_err());
    assert!(p.check_url("http://8.8.8.8/").is_err());
    assert!(p.check_url("http://10.0.0.1/").is_err());
    assert!(p.check_url("http://[::2]/").is_err());
}

/// One address at each end of every refused IPv4 range, with the range it must be named.
const REFUSED_V4: &[(&str, &str)] = &[
    ("0.0.0.0", "this network / unspecified"),
    ("0.255.255.255", "this network / unspecified"),
    ("10.0.0.0", "private (RFC 1918)"),
    ("10.255.255.255", "private (RFC 1918)"),
    ("100.64.0.0", "shared address space (CGNAT)"),
    ("100.127.255.255", "shared address space (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link-local (cloud metadata)"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("169.254.255.255", "link-local (cloud metadata)"),
    ("172.16.0.0", "private (RFC 1918)"),
    ("172.31.255.255", "private (RFC 1918)"),
    ("192.0.0.0", "IETF protocol assignments"),
    ("192.0.0.255", "IETF protocol assignments"),
    ("192.0.2.0", "documentation"),
    ("192.0.2.255", "documentation"),
    ("192.88.99.0", "6to4 relay anycast"),
    ("192.88.99.255", "6to4 relay anycast"),
    ("192.168.0.0", "private (RFC 1918)"),
    ("192.168.255.255", "private (RFC 1918)"),
    ("198.18.0.0", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.0", "documentation"),
    ("198.51.100.255", "documentation"),
    ("203.0.113.0", "documentation"),
    ("203.0.113.255", "documentation"),
    ("224.0.0.0", "multicast"),
    ("239.255.255.255", "multicast"),
    ("240.0.0.0", "reserved (includes broadcast)"),
    ("255.255.255.254", "reserved (includes broadcast)"),
    ("255.255.255.255", "reserved (includes broadcast)"),
];

/// The addresses just outside the refused IPv4 ranges, which are public.
const PUBLIC_NEIGHBOURS_V4: &[&str] = &[
    "1.0.0.0",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.0.3.0",
    "192.88.98.255",
    "192.88.100.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "198.51.99.255",
    "198.51.101.0",
    "203.0.112.255",
    "203.0.114.0",
    "223.255.255.255",
];

fn v4(text: &str) -> Ipv4Addr {
    text.parse().expect("test address parses")
}

fn refusal(result: Result<(), TargetError>) -> Option<(IpAddr, &'static str)> {
    match result {
        Err(TargetError::RefusedAddress { addr, range }) => Some((addr, range)),
        _ => None,
    }
}

#[test]
fn every_refused_v4_range_is_named_and_its_neighbours_are_public() {
    let p = default_policy();
    for (text, range) in REFUSED_V4 {
        let ip = IpAddr::V4(v4(text));
        assert_eq!(special_range(ip), Some(*range), "{text}");
        assert_eq!(refusal(p.check_addr(ip)), Some((ip, *range)), "{text}");
    }
    for text in PUBLIC_NEIGHBOURS_V4 {
        assert_eq!(p.check_addr(IpAddr::V4(v4(text))), Ok(()), "{text}");
    }
}

#[test]
fn ipv6_forms_of_refused_v4_addresses_are_refused_as_that_range() {
    let p = default_policy();
    for (text, range) in REFUSED_V4 {
        let ip = v4(text);
        let [a, b, c, d] = ip.octets();
        // IPv4-mapped is the IPv4 address itself, and is reported as such.
        let mapped = IpAddr::V6(ip.to_ipv6_mapped());
        assert_eq!(
            refusal(p.check_addr(mapped)),
            Some((IpAddr::V4(ip), *range)),
            "{mapped}"
        );
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
        let nat64: Ipv6Addr = format!("64:ff9b::{a:02x}{b:02x}:{c:02x}{d:02x}")
            .parse()
            .expect("NAT64 form");
        let six_to_four: Ipv6Addr = format!("2002:{a:02x}{b:02x}:{c:02x}{d:02x}::1")
            .parse()
            .expect("6to4 form");
        for form in [nat64, six_to_four] {
            assert_eq!(special_range(IpAddr::V6(form)), Some(*range), "{form}");
            assert!(p.check_addr(IpAddr::V6(form)).is_err(), "{form}");
        }
        // IPv4-compatible (::a.b.c.d) is deprecated and refused whatever it embeds.
        let compatible = IpAddr::V6(ip.to_ipv6_compatible());
        assert!(p.check_addr(compatible).is_err(), "{compatible}");
    }
    for text in ["8.8.8.8", "1.1.1.1"] {
        let ip = v4(text);
        let [a, b, c, d] = ip.octets();
        for form in [
            format!("::ffff:{ip}"),
            format!("64:ff9b::{a:02x}{b:02x}:{c:02x}{d:02x}"),
            format!("2002:{a:02x}{b:02x}:{c:02x}{d:02x}::"),
        ] {
            let addr: IpAddr = form.parse().expect("IPv6 form");
            assert_eq!(p.check_addr(addr), Ok(()), "{form} embeds a public address");
        }
    }
}

#[test]
fn every_refused_v6_range_is_named() {
    let p = default_policy();
    for (text, range) in [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::2", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::", "local-use NAT64"),
        ("64:ff9b:1:ffff::1", "local-use NAT64"),
        ("100::", "discard-only"),
        ("100::ffff:ffff:ffff:ffff", "discard-only"),
        ("2001::", "IETF protocol assignments (incl. Teredo)"),
        (
            "2001:1ff:ffff::1",
            "IETF protocol assignments (incl. Teredo)",
        ),
        ("2001:db8::", "documentation"),
        ("2001:db8:ffff::1", "documentation"),
        ("3fff::", "documentation"),
        ("3fff:fff:ffff::1", "documentation"),
        ("fc00::", "unique local (ULA)"),
        ("fdff:ffff::1", "unique local (ULA)"),
        ("fe80::", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("fec0::", "site-local (deprecated)"),
        ("feff:ffff::1", "site-local (deprecated)"),
        ("ff00::", "multicast"),
        ("ff02::1", "multicast"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"),
        // Outside 2000::/3 nothing is global unicast.
        (
            "::ffff:0:7f00:1",
            "reserved (outside global unicast 2000::/3)",
        ),
        ("100:0:0:1::1", "reserved (outside global unicast 2000::/3)"),
        ("1fff:ffff::1", "reserved (outside global unicast 2000::/3)"),
        ("4000::1", "reserved (outside global unicast 2000::/3)"),
        ("5f00::1", "reserved (outside global unicast 2000::/3)"),
        ("fe00::1", "reserved (outside global unicast 2000::/3)"),
    ] {
        let addr: IpAddr = text.parse().expect("test address parses");
        assert_eq!(special_range(addr), Some(range), "{text}");
        assert_eq!(refusal(p.check_addr(addr)), Some((addr, range)), "{text}");
    }
    for text in [
        "2000::1",
        "2001:200::1",
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "3ffe::1",
        "3fff:1000::1",
    ] {
        let addr: IpAddr = text.parse().expect("test address parses");
        assert_eq!(p.check_addr(addr), Ok(()), "{text}");
    }
}

#[test]
fn every_ipv4_spelling_of_every_refused_range_is_refused_in_a_url() {
    let p = default_policy();
    for (text, range) in REFUSED_V4 {
        let ip = v4(text);
        let [a, b, c, d] = ip.octets();
        let int = u32::from(ip);
        let spellings = [
            format!("http://{ip}/"),
            format!("http://{int}/"),
            format!("http://0x{int:x}/"),
            format!("http://0X{int:08X}/"),
            format!("http://0{int:o}/"),
            format!("http://0{a:o}.0{b:o}.0{c:o}.0{d:o}/"),
            format!("http://0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}/"),
            format!("http://{a}.{}/", u32::from_be_bytes([0, b, c, d])),
            format!("http://{a}.{b}.{}/", u32::from(c) << 8 | u32::from(d)),
            format!("http://{ip}.:8080/path"),
            format!("https://[::ffff:{ip}]/"),
            format!("https://[::FFFF:{a:02x}{b:02x}:{c:02x}{d:02x}]:443/"),
            format!("http://[0:0:0:0:0:ffff:{ip}]/"),
        ];
        for url in spellings {
            assert_eq!(
                p.check_url(&url),
                Err(TargetError::RefusedAddress {
                    addr: IpAddr::V4(ip),
                    range
                }),
                "{url}"
            );
        }
    }
}

#[test]
fn allowlist_matches_mapped_forms_and_private_switch_opens_everything() {
    let p = TargetPolicy {
        allowed_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        ..TargetPolicy::default()
    };
    assert_eq!(p.check_url("http://[::ffff:10.1.2.3]/").map(|_| ()), Ok(()));
    assert!(p.check_url("http://[::ffff:10.2.0.1]/").is_err());
    let open = TargetPolicy {
        allow_private_targets: true,
        ..TargetPolicy::default()
    };
    for (text, _) in REFUSED_V4 {
        assert_eq!(open.check_addr(IpAddr::V4(v4(text))), Ok(()), "{text}");
    }
    assert_eq!(open.check_addr("fd00::1".parse().expect("ip")), Ok(()));
}

#[test]
fn loopback_only_mode_refuses_every_other_range_and_name() {
    let p = TargetPolicy::loopback_only();
    for (text, range) in REFUSED_V4 {
        let ip = IpAddr::V4(v4(text));
        let verdict = p.check_addr(ip);
        if *range == "loopback" {
            assert_eq!(verdict, Ok(()), "{text}");
        } else {
            assert_eq!(
                verdict,
                Err(TargetError::RefusedAddress {
                    addr: ip,
                    range: "outside the allowed CIDRs"
                }),
                "{text}"
            );
        }
    }
    for public in ["8.8.8.8", "2606:4700::1111", "fe80::1", "::"] {
        assert!(
            p.check_addr(public.parse().expect("ip")).is_err(),
            "{public}"
        );
    }
    for name in [
        "example.com",
        "localhost.localdomain",
        "localhost.example.com",
        "mylocalhost",
        "metadata.google.internal",
        "127.0.0.1.nip.io",
        "xn--localhost-",
    ] {
        assert_eq!(
            p.check_host_name(name),
            Err(TargetError::RefusedHost(name.to_owned())),
            "{name}"
        );
    }
    for name in ["localhost", "LocalHost", "localhost."] {
        assert_eq!(p.check_host_name(name), Ok(()), "{name}");
    }
}
