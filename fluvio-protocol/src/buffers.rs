//! Payload buffers that are used again instead of freed.
//!
//! A consumer reading a partition receives frames of up to 256 KiB of stored
//! batches, and a server reads each batch (about 64 KiB from the SDK's
//! producers) from a file or a JetStream message into a buffer of its own.
//! Allocated fresh and freed each time, such buffers make the C allocator
//! hand their pages back to the kernel and fault them in again: in the
//! platform benchmark that churn was a quarter of the CPU a consume took.
//! The few buffers a stream has in flight at once are kept here and handed
//! out again.
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
/// Bytes kept at most, in all the buffers together.
const KEPT_BYTES: usize = 16 << 20;
/// Smaller buffers are not worth keeping; larger ones are not kept. A frame
/// of a stream without SmartModules holds up to 256 KiB and a batch, one of
/// SmartModule outputs up to the consumer's `max_bytes` (1 MiB unless it
/// asks otherwise).
const SMALLEST_KEPT: usize = 4 << 10;
const LARGEST_KEPT: usize = 2 << 20;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer that holds at least `len` bytes without growing: the
/// smallest kept one that does, else the largest kept one grown (so that no
/// buffer stays kept for ever), else a new one.
pub fn take(len: usize) -> Vec<u8> {
    let kept = if len <= LARGEST_KEPT {
        let mut kept = KEPT.lock().expect("buffer pool lock");
        pick(&kept, len).map(|at| kept.swap_remove(at))
    } else {
        None
    };
    match kept {
        Some(mut buffer) => {
            buffer.reserve(len);
            buffer
        }
        None => Vec::with_capacity(len),
    }
}

/// Which kept buffer `take` hands out for `len` bytes.
fn pick(buffers: &[Vec<u8>], len: usize) -> Option<usize> {
    let capacities = buffers.iter().map(Vec::capacity).enumerate();
    let fitting = capacities.clone().filter(|&(_, capacity)| capacity >= len).min_by_key(|&(_, capacity)| capacity);
    fitting.or_else(|| capacities.max_by_key(|&(_, capacity)| capacity)).map(|(at, _)| at)
}

/// Keeps `buffer` for a later [`take`], or frees it when it is too small or
/// too large to be worth keeping, or enough are kept already.
pub fn give(mut buffer: Vec<u8>) {
    let capacity = buffer.capacity();
    if !(SMALLEST_KEPT..=LARGEST_KEPT).contains(&capacity) {
        return;
    }
    buffer.clear();
    let mut kept = KEPT.lock().expect("buffer pool lock");
    let kept_bytes: usize = kept.iter().map(Vec::capacity).sum();
    if kept.len() < KEPT_BUFFERS && kept_bytes + capacity <= KEPT_BYTES {
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
        let kept = KEPT.lock().unwrap();
        assert!(kept.iter().all(|b| b.capacity() <= LARGEST_KEPT));
        assert!(kept.iter().map(Vec::capacity).sum::<usize>() <= KEPT_BYTES);
    }

    #[test]
    fn a_request_gets_the_smallest_kept_buffer_that_holds_it_else_the_largest() {
        let kept: Vec<Vec<u8>> = [64 << 10, 8 << 10, 512 << 10, 300 << 10].map(Vec::with_capacity).into();
        assert_eq!(pick(&kept, 1 << 10), Some(1));
        assert_eq!(pick(&kept, 64 << 10), Some(0));
        assert_eq!(pick(&kept, 256 << 10), Some(3));
        assert_eq!(pick(&kept, 400 << 10), Some(2));
        // None holds it: the largest, which grows least.
        assert_eq!(pick(&kept, 1 << 20), Some(2));
        assert_eq!(pick(&[], 1 << 10), None);
    }
}
