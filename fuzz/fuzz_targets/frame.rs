//! A frame body as it comes off a socket after its length prefix: refused
//! or read, never a panic; a frame read back after writing is the same
//! frame; it decodes as the request its kind names (the server's own
//! decoding) or is refused.
#![no_main]

use fluvio_protocol::messages::{ErrorResponse, StreamEvent};
use fluvio_protocol::{AnyRequest, Frame};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::from_body(data.to_vec()) else { return };
    let _ = AnyRequest::from_frame(frame.clone());
    let _ = frame.control::<StreamEvent>();
    let _ = frame.control::<ErrorResponse>();
    let mut written = frame.head();
    written.extend_from_slice(&frame.payload);
    let prefix: [u8; 4] = written[..4].try_into().unwrap();
    assert_eq!(Frame::body_len(prefix, u32::MAX).unwrap(), written.len() - 4);
    let again = Frame::from_body(written[4..].to_vec()).expect("a written frame reads back");
    assert_eq!(again, frame);
});
