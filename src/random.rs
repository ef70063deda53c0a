//! Random bytes straight from the kernel (getrandom(2)), for ids, MIME
//! boundaries and store nonces.
//!
//! Sequoia's `crypto::random`, on its nettle backend, seeds a fresh Yarrow
//! generator on every call (about 0.15 ms); a copy needs several tokens,
//! so the fan-out takes them from here instead. Sequoia still draws its
//! own session keys.

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the kernel's random source");
    bytes
}

/// 64 random bits: copy ids (unguessable from one another).
pub fn u64() -> u64 {
    u64::from_be_bytes(bytes())
}

/// 128 random bits in hex: MIME boundaries, Message-ID local parts.
pub fn token() -> String {
    bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_unique_hex() {
        let (a, b) = (super::token(), super::token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
