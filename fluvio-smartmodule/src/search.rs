//! Byte search for record bytes, 16 bytes at a time in a module built with
//! WebAssembly SIMD (`+simd128`, as the SmartModule template builds).
//!
//! The standard library's `<[u8]>::contains` searches a machine word at a
//! time, and on `wasm32` a word is four bytes: a 100-byte value takes 25
//! steps, where a native build takes 13 and this takes 7. Filters that look
//! for a byte are the commonest kind, so [`crate::RecordData::contains`]
//! uses this.

/// Whether `haystack` holds `needle`.
#[inline]
pub(crate) fn contains_byte(haystack: &[u8], needle: u8) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        contains_byte_simd128(haystack, needle)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        haystack.contains(&needle)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn contains_byte_simd128(haystack: &[u8], needle: u8) -> bool {
    use core::arch::wasm32::{u8x16_eq, u8x16_splat, v128, v128_any_true, v128_load, v128_or};

    const LANES: usize = 16;
    let len = haystack.len();
    if len < LANES {
        return haystack.iter().any(|&byte| byte == needle);
    }
    let start = haystack.as_ptr();
    let wanted = u8x16_splat(needle);
    // SAFETY (all loads): each reads 16 bytes that lie inside `haystack`
    // (`at + 16 <= len`, or the last 16 since `len >= 16`); WebAssembly
    // loads need no alignment.
    let load = |at: usize| unsafe { v128_load(start.add(at).cast::<v128>()) };
    let mut at = 0;
    // Four vectors a step: one branch (and one loop check of the
    // metering) for 64 bytes.
    while at + 4 * LANES <= len {
        let low = v128_or(u8x16_eq(load(at), wanted), u8x16_eq(load(at + LANES), wanted));
        let high = v128_or(u8x16_eq(load(at + 2 * LANES), wanted), u8x16_eq(load(at + 3 * LANES), wanted));
        if v128_any_true(v128_or(low, high)) {
            return true;
        }
        at += 4 * LANES;
    }
    while at + LANES <= len {
        if v128_any_true(u8x16_eq(load(at), wanted)) {
            return true;
        }
        at += LANES;
    }
    // The rest, fewer than 16 bytes, as the last 16: the bytes looked at
    // twice were not the needle, so looking again changes nothing.
    at < len && v128_any_true(u8x16_eq(load(len - LANES), wanted))
}

#[cfg(test)]
mod tests {
    use super::contains_byte;

    #[test]
    fn agrees_with_the_standard_search_at_every_length_and_place() {
        for len in 0..80 {
            let mut haystack = vec![b'.'; len];
            assert!(!contains_byte(&haystack, b'#'), "len {len}, absent");
            for place in 0..len {
                haystack[place] = b'#';
                assert!(contains_byte(&haystack, b'#'), "len {len}, at {place}");
                haystack[place] = b'.';
            }
        }
    }
}
