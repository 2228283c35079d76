//! Every control message a server or client decodes, from any bytes: refused
//! or decoded, never a panic, and a decoded message encodes to bytes that
//! decode to the same message.
#![no_main]

use fluvio_protocol::frame::{decode, encode};
use fluvio_protocol::messages::*;
use fluvio_protocol::requests::*;

fn round_trip<T>(bytes: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = decode::<T>(bytes) {
        let again: T = decode(&encode(&message)).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 19 {
        0 => round_trip::<CreateTopicRequest>(bytes),
        1 => round_trip::<DeleteTopicRequest>(bytes),
        2 => round_trip::<ProduceRequest>(bytes),
        3 => round_trip::<StreamFetchRequest>(bytes),
        4 => round_trip::<CreateSmartModuleRequest>(bytes),
        5 => round_trip::<CreateConnectorRequest>(bytes),
        6 => round_trip::<ConnectorLogsRequest>(bytes),
        7 => round_trip::<CommitOffsetRequest>(bytes),
        8 => round_trip::<FetchOffsetRequest>(bytes),
        9 => round_trip::<DeleteConsumerRequest>(bytes),
        10 => round_trip::<AuthenticateRequest>(bytes),
        11 => round_trip::<StreamEvent>(bytes),
        12 => round_trip::<ErrorResponse>(bytes),
        13 => round_trip::<ListTopicsResponse>(bytes),
        14 => round_trip::<ProduceResponse>(bytes),
        15 => round_trip::<ListConsumersPageRequest>(bytes),
        16 => round_trip::<ListConsumersPageResponse>(bytes),
        17 => round_trip::<DeleteConsumerOffsetRequest>(bytes),
        _ => round_trip::<AuthenticateResponse>(bytes),
    }
});
