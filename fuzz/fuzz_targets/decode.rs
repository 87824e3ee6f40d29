//! The decoder never panics, and what it decodes re-encodes to a session that
//! decodes to the same header, with the data where the header says.
#![no_main]

use handoff_proto::{decode, Mode, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(Status::Complete(frame)) = decode(bytes) else { return };
    assert!(frame.data_range().start <= 3 + 282);
    let prefix = frame
        .header()
        .encode(frame.data_len(), Mode::Extended)
        .expect("a decoded header encodes");
    let mut again = prefix.to_vec();
    again.resize(prefix.len() + frame.data_len(), 0);
    match decode(&again) {
        Ok(Status::Complete(f)) => {
            assert_eq!(f.header(), frame.header());
            assert_eq!(f.data_len(), frame.data_len());
            assert_eq!(f.total_len(), again.len());
        }
        other => panic!("re-encoded header does not decode: {other:?}"),
    }
    // Canonical form is a fixed point.
    let twice = frame.header().encode(frame.data_len(), Mode::Extended).unwrap();
    assert_eq!(&twice[..], &prefix[..]);
});
