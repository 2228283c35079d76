//! Payload buffers that are used again instead of freed.
//!
//! A consumer reading a partition receives a frame of about 64 KiB for every
//! stored batch, and the server reads one from disk for each. Allocated fresh
//! and freed each time, such buffers make the C allocator hand their pages
//! back to the kernel and fault them in again: in the platform benchmark that
//! churn was a quarter of the CPU a consume took. The few buffers a stream
//! has in flight at once are kept here and handed out again.
//!
//! ```
//! use fluvio_protocol::buffers;
//!
//! let mut buffer = buffers::take(64 << 10);
//! buffer.extend_from_slice(b"a payload");
//! buffers::give(buffer); // kept for the next `take`
//! ```

use std::sync::Mutex;

/// Buffers kept at most: enough for several streams' frames in flight.
const KEPT_BUFFERS: usize = 64;
/// Smaller buffers are not worth keeping; larger ones are not kept, so the
/// pool holds at most `KEPT_BUFFERS * LARGEST_KEPT` bytes (16 MiB).
const SMALLEST_KEPT: usize = 4 << 10;
const LARGEST_KEPT: usize = 256 << 10;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer that holds at least `len` bytes without growing: a kept
/// one when there is one.
pub fn take(len: usize) -> Vec<u8> {
    let kept = if len <= LARGEST_KEPT { KEPT.lock().expect("buffer pool lock").pop() } else { None };
    match kept {
        Some(mut buffer) => {
            buffer.reserve(len);
            buffer
        }
        None => Vec::with_capacity(len),
    }
}

/// Keeps `buffer` for a later [`take`], or frees it when it is too small or
/// too large to be worth keeping, or enough are kept already.
pub fn give(mut buffer: Vec<u8>) {
    if !(SMALLEST_KEPT..=LARGEST_KEPT).contains(&buffer.capacity()) {
        return;
    }
    buffer.clear();
    let mut kept = KEPT.lock().expect("buffer pool lock");
    if kept.len() < KEPT_BUFFERS {
        kept.push(buffer);
    }
}

/// A buffer that goes back to the pool when dropped: the owner of a shared
/// `Bytes` whose slices (a consumer's records) outlive the code that read it.
#[derive(Debug)]
pub struct Recycled(pub Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_empty_and_large_enough() {
        let mut buffer = take(64 << 10);
        buffer.extend_from_slice(&[1; 100]);
        let address = buffer.as_ptr();
        give(buffer);
        // Other tests may take buffers meanwhile; look for this one.
        let taken: Vec<Vec<u8>> = (0..KEPT_BUFFERS).map(|_| take(1 << 10)).collect();
        let again = taken.iter().find(|b| b.as_ptr() == address).expect("the given buffer is handed out again");
        assert!(again.is_empty() && again.capacity() >= 64 << 10);
        let huge = vec![0u8; LARGEST_KEPT * 2];
        give(huge);
        assert!(KEPT.lock().unwrap().iter().all(|b| b.capacity() <= LARGEST_KEPT));
    }
}
