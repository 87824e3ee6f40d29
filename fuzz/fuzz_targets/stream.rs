//! Sessions back to back, fed in arbitrary pieces: every prefix shorter than a
//! header is `Partial`, never an error that the whole would not give, and decoding
//! a stream never panics.
#![no_main]

use handoff_proto::{decode, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut at = 0;
    while at < bytes.len() {
        let whole = decode(&bytes[at..]);
        // A prefix answers Partial, or the same error as the whole, or (once the
        // header is complete) the same frame.
        for cut in [1, 2, 3, 17, 59, 83] {
            let end = (at + cut).min(bytes.len());
            match (decode(&bytes[at..end]), &whole) {
                (Ok(Status::Partial), _) => {}
                (Err(e), Err(w)) => assert_eq!(&e, w),
                (Ok(Status::Complete(f)), Ok(Status::Complete(w))) => assert_eq!(&f, w),
                (got, want) => panic!("prefix {cut} gave {got:?}, whole {want:?}"),
            }
        }
        match whole {
            Ok(Status::Complete(f)) => at += f.total_len().max(1),
            _ => break,
        }
    }
});
