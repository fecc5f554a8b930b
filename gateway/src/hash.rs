//! A small, fixed hash: every gateway replica (any build, any platform) must compute the
//! same scores, which `std`'s hasher does not promise. A leaf module: the pool hashes
//! sidecar names with it once, routing scores with it on every request.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over several byte strings, each followed by a separator byte so that
/// ("ab","c") and ("a","bc") differ.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// splitmix64's finalizer: spreads FNV's weak low bits over the whole word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous score of `node` for `key`: highest wins.
pub fn score(key: u64, node: u64) -> u64 {
    mix(key ^ mix(node))
}
/// Hash of a sidecar name, as used in rendezvous scores.
pub fn name_hash(name: &str) -> u64 {
    fnv1a(&[name.as_bytes()])
}
