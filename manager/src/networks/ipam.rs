//! Address and VNI allocation for overlay networks. Pure functions over what is already
//! taken; the store refuses a network whose subnet overlaps another or whose VNI is
//! taken, so two managers racing can never hand out the same range.

use std::net::Ipv4Addr;

/// The first VNI overlay networks get, as in Swarm.
pub const FIRST_VNI: u32 = 4096;
pub const DEFAULT_SUBNET_SIZE: u8 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid subnet {s:?}: use an IPv4 CIDR such as 10.0.9.0/24");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=29).contains(&prefix) {
            return Err(format!(
                "invalid subnet {s:?}: the prefix length must be between 8 and 29"
            ));
        }
        let base = u32::from(addr);
        if base & !mask(prefix) != 0 {
            return Err(format!(
                "invalid subnet {s:?}: {addr} is not the network address of a /{prefix} (did you mean {}/{prefix}?)",
                Ipv4Addr::from(base & mask(prefix))
            ));
        }
        Ok(Cidr { base, prefix })
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let p = self.prefix.min(other.prefix);
        self.base & mask(p) == other.base & mask(p)
    }

    /// The first usable address, the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether `ip` can be given to a host (not the network or broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.contains(ip)
            && v != self.base
            && u64::from(v) != u64::from(self.base) + self.size() - 1
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The first `size`-prefix subnet of the pools that overlaps nothing taken.
pub fn next_subnet(pools: &[Cidr], size: u8, taken: &[Cidr]) -> Option<Cidr> {
    for pool in pools {
        if size < pool.prefix {
            continue;
        }
        let step = 1u64 << (32 - size);
        let mut base = u64::from(pool.base);
        while base + step <= u64::from(pool.base) + pool.size() {
            let candidate = Cidr {
                base: base as u32,
                prefix: size,
            };
            if !taken.iter().any(|t| t.overlaps(&candidate)) {
                return Some(candidate);
            }
            base += step;
        }
    }
    None
}

/// The smallest free VNI from FIRST_VNI up.
pub fn next_vni(taken: &[u32]) -> u32 {
    let mut vni = FIRST_VNI;
    while taken.contains(&vni) {
        vni += 1;
    }
    vni
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn cidrs_parse_and_compare() {
        assert_eq!(c("10.0.1.0/24").to_string(), "10.0.1.0/24");
        assert!(
            Cidr::parse("10.0.1.5/24")
                .unwrap_err()
                .contains("did you mean 10.0.1.0/24")
        );
        assert!(Cidr::parse("10.0.1.0").is_err());
        assert!(Cidr::parse("10.0.1.0/31").is_err());
        assert!(c("10.0.0.0/16").overlaps(&c("10.0.5.0/24")));
        assert!(!c("10.0.0.0/24").overlaps(&c("10.0.1.0/24")));
        assert!(c("10.0.1.0/24").is_host("10.0.1.1".parse().unwrap()));
        assert!(!c("10.0.1.0/24").is_host("10.0.1.255".parse().unwrap()));
        assert!(!c("10.0.1.0/24").is_host("10.0.2.1".parse().unwrap()));
    }

    #[test]
    fn subnets_come_from_the_pool_in_order_skipping_taken_ones() {
        let pool = [c("10.0.0.0/8")];
        assert_eq!(next_subnet(&pool, 24, &[]), Some(c("10.0.0.0/24")));
        assert_eq!(
            next_subnet(&pool, 24, &[c("10.0.0.0/24"), c("10.0.1.0/24")]),
            Some(c("10.0.2.0/24"))
        );
        assert_eq!(
            next_subnet(&pool, 24, &[c("10.0.0.0/23")]),
            Some(c("10.0.2.0/24"))
        );
        assert_eq!(
            next_subnet(&[c("10.1.0.0/24")], 24, &[c("10.1.0.0/24")]),
            None
        );
        assert_eq!(
            next_subnet(
                &[c("10.1.0.0/24"), c("10.2.0.0/16")],
                24,
                &[c("10.1.0.0/24")]
            ),
            Some(c("10.2.0.0/24"))
        );
    }

    #[test]
    fn vnis_start_at_4096_and_fill_gaps() {
        assert_eq!(next_vni(&[]), 4096);
        assert_eq!(next_vni(&[4096, 4097]), 4098);
        assert_eq!(next_vni(&[4097]), 4096);
    }
}
