//! Property tests of the setup blob a module reads when it starts (its
//! params, initial accumulator, look-back and answer layout): every valid
//! blob reads back what was written, and damaged ones (a byte changed, a
//! length or count moved or set huge, bytes cut off) are refused or read,
//! never a panic (a panic in a module's setup is a failed stream).

use std::collections::BTreeMap;

use dev_support::damage::{Lcg, damage};
use fluvio_smartmodule::abi;
use fluvio_smartmodule::guest::parse_setup;

struct Setup {
    params: BTreeMap<String, String>,
    accumulator: Option<Vec<u8>>,
    look_back: Option<(u64, i64)>,
    /// The answer layout offered; `None` writes none, as hosts before
    /// layout 2 did.
    layout: Option<u32>,
}

fn text(random: &mut Lcg) -> String {
    (0..random.below(12)).map(|_| (b'a' + random.below(26) as u8) as char).collect()
}

fn setup(random: &mut Lcg) -> Setup {
    Setup {
        params: (0..random.below(5)).map(|_| (text(random), text(random))).collect(),
        accumulator: (random.below(2) == 0).then(|| (0..random.below(30)).map(|_| random.below(256) as u8).collect()),
        look_back: (random.below(2) == 0).then(|| (random.below(1000), random.below(100_000) as i64 - 1)),
        layout: (random.below(2) == 0).then(|| random.below(4) as u32),
    }
}

/// The layout the engine writes (`encode_setup` in fluvio-smartengine).
fn encode(setup: &Setup) -> Vec<u8> {
    let mut blob = (setup.params.len() as u32).to_le_bytes().to_vec();
    for (name, value) in &setup.params {
        abi::encode_header(&mut blob, name.as_bytes(), value.as_bytes());
    }
    match &setup.accumulator {
        Some(accumulator) => {
            blob.extend_from_slice(&(accumulator.len() as i32).to_le_bytes());
            blob.extend_from_slice(accumulator);
        }
        None => blob.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    match setup.look_back {
        Some((last, age)) => {
            blob.push(1);
            blob.extend_from_slice(&last.to_le_bytes());
            blob.extend_from_slice(&age.to_le_bytes());
        }
        None => blob.push(0),
    }
    if let Some(layout) = setup.layout {
        blob.extend_from_slice(&layout.to_le_bytes());
    }
    blob
}

#[test]
fn setup_blobs_read_back_and_damaged_ones_never_panic() {
    let mut random = Lcg(0x5e7_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut accepted, mut refused) = (0u32, 0u32);
    for round in 0..100_000u32 {
        let setup = setup(&mut random);
        let mut blob = encode(&setup);
        if round % 4 == 0 {
            let read = parse_setup(&blob).unwrap_or_else(|e| panic!("round {round}: {e}"));
            for (name, value) in &setup.params {
                assert_eq!(read.params.get(name), Some(value), "round {round}");
            }
            assert_eq!(read.accumulator.as_ref().map(|a| a.as_ref().to_vec()), setup.accumulator, "round {round}");
            let look_back = read.params.lookback().map(|l| (l.last, l.age.map_or(-1, |age| age.as_millis() as i64)));
            assert_eq!(look_back, setup.look_back, "round {round}");
            assert_eq!(read.offered_layout, setup.layout.unwrap_or(abi::ANSWER_LAYOUT_1), "round {round}");
            continue;
        }
        for _ in 0..random.below(3) + 1 {
            damage(&mut random, &mut blob);
        }
        match parse_setup(&blob) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(accepted > 5_000 && refused > 5_000, "accepted {accepted}, refused {refused}");
}
