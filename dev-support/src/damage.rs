//! Random damage for property tests of parsers: a small deterministic
//! generator (a failure is reproduced from the round number a test prints)
//! and the ways a bad disk, a bad peer or an attacker changes bytes.

/// A small deterministic generator: the tests need variety, not secrecy.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `bound` (0 for a bound of 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// Changes `bytes` in one of the ways a bad disk, a bad peer or an
/// attacker would: a byte, a little-endian u32 length or count moved a
/// little or set near `u32::MAX`, or a cut.
pub fn damage(random: &mut Lcg, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match random.below(4) {
        0 => {
            let at = random.below(bytes.len() as u64) as usize;
            bytes[at] = random.below(256) as u8;
        }
        1 if bytes.len() >= 4 => {
            let at = random.below(bytes.len() as u64 - 3) as usize;
            let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            let new = match random.below(2) {
                0 => old.wrapping_add(random.below(9) as u32).wrapping_sub(4),
                _ => u32::MAX - random.below(3) as u32,
            };
            bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
        }
        _ => bytes.truncate(random.below(bytes.len() as u64) as usize),
    }
}
