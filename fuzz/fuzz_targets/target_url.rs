//! The target policy on arbitrary UTF-8: `check_url` never panics under the default policy
//! or in loopback-only mode, and loopback-only mode accepts nothing but `localhost` and
//! loopback addresses.

#![no_main]

use hookwire_core::TargetPolicy;
use libfuzzer_sys::fuzz_target;
use url::Host;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = TargetPolicy::default().check_url(text) {
        assert!(matches!(url.scheme(), "http" | "https"));
        assert!(url.host().is_some());
    }
    if let Ok(url) = TargetPolicy::loopback_only().check_url(text) {
        let loopback = match url.host() {
            Some(Host::Domain(name)) => {
                name.trim_end_matches('.').eq_ignore_ascii_case("localhost")
            }
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            None => false,
        };
        assert!(loopback, "loopback-only mode accepted {url}");
    }
});
