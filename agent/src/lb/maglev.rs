//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of a prime
//! number of slots, filled from each backend's own permutation of the slots in turn. Every
//! node builds the same table from the same backends (the hashes are fixed, the backends
//! sorted), so a flow picks the same backend whichever node it enters; each backend holds
//! an almost equal share; a backend that comes or goes moves few other flows.

use std::net::Ipv4Addr;

/// FNV-1a over the backend's address and port, with a seed per use.
fn hash(seed: u64, addr: Ipv4Addr, port: u16) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in addr.octets().into_iter().chain(port.to_be_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Spread the low bits (FNV alone leaves them correlated for close addresses).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The lookup table: for each of `slots` slots (a prime), the index of its backend in
/// `backends`. Empty when there are no backends.
pub fn table(backends: &[(Ipv4Addr, u16)], slots: u32) -> Vec<u32> {
    if backends.is_empty() {
        return vec![];
    }
    let m = slots as u64;
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|&(a, p)| (hash(1, a, p) % m, hash(2, a, p) % (m - 1) + 1))
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut entry = vec![u32::MAX; slots as usize];
    let mut filled = 0;
    loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while entry[c as usize] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            entry[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == slots {
                return entry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u8) -> Vec<(Ipv4Addr, u16)> {
        (0..n)
            .map(|i| (Ipv4Addr::new(10, 0, 0, 10 + i), 80))
            .collect()
    }

    #[test]
    fn every_backend_gets_an_almost_equal_share() {
        for n in [1u8, 2, 3, 5, 16] {
            let t = table(&backends(n), 257);
            assert_eq!(t.len(), 257);
            for b in 0..n as u32 {
                let share = t.iter().filter(|&&x| x == b).count();
                let fair = 257 / n as usize;
                assert!(
                    share.abs_diff(fair) <= fair / 10 + 2,
                    "{n} backends: backend {b} holds {share} of 257 slots"
                );
            }
        }
    }

    #[test]
    fn a_backend_leaving_moves_few_other_flows() {
        let all = backends(5);
        let before = table(&all, 257);
        let mut fewer = all.clone();
        fewer.remove(2);
        let after = table(&fewer, 257);
        // Map both to addresses and count slots that changed although their backend stayed.
        let moved = (0..257)
            .filter(|&s| {
                let was = all[before[s] as usize];
                was != all[2] && fewer[after[s] as usize] != was
            })
            .count();
        assert!(moved <= 257 / 10, "{moved} slots of staying backends moved");
    }

    #[test]
    fn the_same_backends_give_the_same_table() {
        assert_eq!(table(&backends(4), 257), table(&backends(4), 257));
        assert!(table(&[], 257).is_empty());
    }
}
