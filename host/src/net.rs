//! The outbound address policy: where the server may open a connection on a tenant's
//! behalf. Every outbound path a tenant can point somewhere (URL data sources, a
//! function's network grants, its outgoing `wasi:http` requests) asks [`AddressPolicy`]
//! about each resolved address just before connecting to it, so a name cannot resolve
//! to a checked address and then be connected to elsewhere.
//!
//! By default only public internet addresses pass. Loopback, private (RFC 1918),
//! shared (CGNAT), link-local (cloud metadata lives at 169.254.169.254), unspecified,
//! multicast, broadcast, documentation, benchmarking and reserved ranges are refused,
//! and so is every IPv6 range outside global unicast (`2000::/3`): unique-local,
//! site-local, link-local, multicast. IPv6 addresses that embed an IPv4 address
//! (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) are judged by the
//! IPv4 they carry too, because a kernel, a NAT64 gateway or a relay turns them into
//! that IPv4 destination. An operator lets chosen ranges through with an allow-list
//! (`serve --allow-private-network CIDR`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Which destinations outbound connections may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Non-public ranges the operator allows anyway.
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// Public addresses, plus the operator's `allow` ranges.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// Every address (for trusted networks and tests).
    pub fn allow_all() -> Self {
        Self::new(vec![Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)])
    }

    /// Whether a connection to `ip` is allowed: the address is public or in an allowed
    /// range, and so is every IPv4 address it embeds.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ok = |ip: IpAddr| is_public(ip) || self.allow.iter().any(|c| c.contains(ip));
        let IpAddr::V6(v6) = ip else { return ok(ip) };
        let embedded = embedded_ipv4(v6);
        if embedded.is_empty() {
            return ok(ip);
        }
        // An embedding prefix is no destination of its own: the IPv4 it carries is, so an
        // IPv4 range in the allow-list also admits the IPv6 spellings of its addresses. The
        // allow-list may name the IPv6 form itself too.
        self.allow.iter().any(|c| c.contains(ip)) || embedded.iter().all(|&v4| ok(IpAddr::V4(v4)))
    }
}

/// Whether `ip` is a public internet address. For IPv6 this is global unicast outside
/// the special ranges; embedded IPv4 is judged by [`AddressPolicy::permits`].
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(a == 0 // "this network", 0.0.0.0 included
        || a == 10 // RFC 1918
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64.0.0/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || (a == 192 && b == 0 && c == 2) // documentation, TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || (a == 198 && b == 51 && c == 100) // documentation, TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation, TEST-NET-3
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    // Only 2000::/3 is global unicast; everything else (::, ::1, ::ffff:0:0/96, 64:ff9b::/96,
    // 100::/64, 5f00::/16, fc00::/7, fec0::/10, fe80::/10, ff00::/8 ...) is not.
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation, 2001:db8::/32
        && !(s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking, 2001:2::/48
        && !(s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // ORCHID, 2001:10::/28
        && (s[0] & 0xfff0) != 0x3ff0 // documentation, 3fff::/20
}

/// The IPv4 addresses an IPv6 address carries, by the embeddings that deliver it to
/// that IPv4 destination somewhere along the way.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => vec![last],
        // SIIT IPv4-translated ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0xffff, 0, _, _] => vec![last],
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => vec![last],
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![last],
        // 6to4 2002:a.b.c.d::/48
        [0x2002, ..] => vec![Ipv4Addr::new(o[2], o[3], o[4], o[5])],
        // Teredo 2001:0::/32: the server's IPv4, then the client's, stored inverted.
        [0x2001, 0, ..] => {
            let client = u32::from(last) ^ 0xffff_ffff;
            vec![Ipv4Addr::new(o[4], o[5], o[6], o[7]), Ipv4Addr::from(client)]
        }
        _ => Vec::new(),
    }
}

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `addr` with a `prefix`-bit network part (clamped to the family's width).
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix: prefix.min(width) }
    }

    /// Whether `ip` lies in the range. Families never match each other here;
    /// [`AddressPolicy::permits`] handles IPv4 embedded in IPv6.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range (such as 10.0.0.0/8 or fd00::/8)"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| format!("{s:?}: the prefix length must be a number from 0 to {width}"))?,
        };
        Ok(Self::new(addr, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_ranges_are_refused() {
        let policy = AddressPolicy::default();
        for refused in [
            // IPv4
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
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
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "5f00::1",
            "2001:db8::1",
            "2001:2::1",
            "2001:10::1",
            "3fff::1",
            "64:ff9b:1::1",
            // IPv4-mapped, SIIT and IPv4-compatible spellings of non-public IPv4
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "::0.0.0.1",
            // NAT64 of loopback, private, metadata
            "64:ff9b::7f00:1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            // 6to4 with a non-public IPv4 in bits 16..48
            "2002:7f00:1::",
            "2002:7f00:0001::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::",
            // Teredo: client 127.0.0.1 (inverted 80ff:fffe), then server 10.0.0.1 with a public client
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a00:1:0:0:f7f7:f7f7",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let policy = AddressPolicy::default();
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "151.101.0.223",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            // Teredo with public server 65.54.227.120 and client 8.8.8.8 (inverted f7f7:f7f7)
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert!(policy.permits(ip(public)), "{public} must pass");
        }
    }

    #[test]
    fn the_allow_list_lets_chosen_ranges_through() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        for allowed in ["127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "fd00::5"] {
            assert!(policy.permits(ip(allowed)), "{allowed} is in the allow-list");
        }
        for refused in ["10.0.0.1", "169.254.169.254", "::1", "fe80::1", "fc00::1", "64:ff9b::a9fe:a9fe"] {
            assert!(!policy.permits(ip(refused)), "{refused} is not in the allow-list");
        }
        // A v6 range covers the v6 spelling itself, not an IPv4 outside the list.
        let v6 = AddressPolicy::new(vec!["::1/128".parse().unwrap()]);
        assert!(v6.permits(ip("::1")));
        assert!(!v6.permits(ip("127.0.0.1")));
        assert!(AddressPolicy::allow_all().permits(ip("169.254.169.254")));
        assert!(AddressPolicy::allow_all().permits(ip("::1")));
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().to_string(), "10.1.2.3/32");
        assert_eq!("[::1]".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!(!"10.0.0.0/8".parse::<Cidr>().unwrap().contains(ip("11.0.0.0")));
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains(ip("fdff::1")));
        assert!(!"fd00::/8".parse::<Cidr>().unwrap().contains(ip("10.0.0.1")));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
