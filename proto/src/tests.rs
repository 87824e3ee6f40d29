//! Golden vectors, rule-by-rule tables, prefixes and round trips.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// SPEC §2's golden vector, as a BIND 10 forwarder on a little-endian host wrote it.
const GOLDEN: &str =
    "00 0038 00000002 00000001 00000006 00000010 0200 9377 7f000001 0000000000000000
    00000010 0200 d8fc 7f000001 0000000000000000 00000005 0102030405";

fn golden_header() -> Header {
    Header::new(
        SocketType::STREAM,
        Protocol::TCP,
        "127.0.0.1:37751".parse().unwrap(),
        "127.0.0.1:55548".parse().unwrap(),
    )
    .unwrap()
}

fn wire(h: &Header, data: &[u8], mode: Mode) -> Vec<u8> {
    let mut v = h.encode(data.len(), mode).unwrap().to_vec();
    v.extend_from_slice(data);
    v
}

fn complete(buf: &[u8]) -> Frame {
    match decode(buf) {
        Ok(Status::Complete(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[cfg(target_endian = "little")]
#[test]
fn golden_vector_encodes_byte_for_byte() {
    assert_eq!(
        wire(&golden_header(), &[1, 2, 3, 4, 5], Mode::Bind10),
        hex(GOLDEN)
    );
}

#[cfg(target_endian = "little")]
#[test]
fn golden_vector_decodes() {
    let bytes = hex(GOLDEN);
    let frame = complete(&bytes);
    assert_eq!(frame.header(), &golden_header());
    assert_eq!(frame.header().family(), Family::Inet);
    assert_eq!(frame.fds(), 1);
    assert_eq!(frame.data_len(), 5);
    assert_eq!(frame.total_len(), bytes.len());
    assert_eq!(&bytes[frame.data_range()], &[1, 2, 3, 4, 5]);
}

#[test]
fn every_prefix_of_a_header_is_partial() {
    for h in sample_headers() {
        let bytes = wire(&h, b"abc", Mode::Extended);
        let end = 3 + h.header_len();
        for n in 0..end {
            assert_eq!(
                decode(&bytes[..n]),
                Ok(Status::Partial),
                "prefix {n} of {h:?}"
            );
        }
        for n in end..=bytes.len() {
            assert_eq!(complete(&bytes[..n]).header(), &h);
        }
    }
}

fn sample_headers() -> Vec<Header> {
    let unix = |a: &str, b: &str| {
        Header::new(
            SocketType::STREAM,
            Protocol::DEFAULT,
            a.parse().unwrap(),
            b.parse().unwrap(),
        )
        .unwrap()
    };
    vec![
        golden_header(),
        Header::new(
            SocketType::DGRAM,
            Protocol::UDP,
            "[::1]:53".parse().unwrap(),
            Endpoint::V6(std::net::SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                5300,
                0xdead_beef,
                3,
            )),
        )
        .unwrap(),
        unix("unix:/run/x.sock", "unix:"),
        unix("unix:@abstract", "unix:@"),
        unix(
            &format!("unix:/{}", "p".repeat(SUN_PATH_LEN - 1)),
            &format!("unix:@{}", "n".repeat(MAX_UNIX_ABSTRACT_LEN)),
        ),
    ]
}

#[test]
fn round_trip_is_identity_on_canonical_input() {
    for h in sample_headers() {
        for data in [&b""[..], b"x", &[7u8; MAX_DATA_LEN][..]] {
            let bytes = wire(&h, data, Mode::Extended);
            let f = complete(&bytes);
            assert_eq!(f.header(), &h);
            assert_eq!(&bytes[f.data_range()], data);
            assert_eq!(
                wire(f.header(), &bytes[f.data_range()], Mode::Extended),
                bytes
            );
        }
    }
}

#[test]
fn header_sizes() {
    let h = sample_headers();
    assert_eq!(h[0].header_len(), 56);
    assert_eq!(h[1].header_len(), 80);
    assert_eq!(
        h[4].header_len(),
        FIXED_FIELDS_LEN + 2 * MAX_UNIX_ENDPOINT_LEN
    );
    assert_eq!(
        h[4].encode(0, Mode::Extended).unwrap().len(),
        MAX_PREFIX_LEN
    );
}

#[test]
fn strict_mode_refuses_extensions_and_extended_mode_accepts_them() {
    let unix = &sample_headers()[2];
    assert_eq!(
        unix.encode(1, Mode::Bind10).unwrap_err(),
        EncodeError::StrictUnix
    );
    assert_eq!(
        golden_header().encode(0, Mode::Bind10).unwrap_err(),
        EncodeError::StrictEmptyData
    );
    assert!(unix.encode(0, Mode::Extended).is_ok());
    assert_eq!(
        golden_header()
            .encode(MAX_DATA_LEN + 1, Mode::Extended)
            .unwrap_err(),
        EncodeError::DataTooLong {
            len: MAX_DATA_LEN + 1,
            max: MAX_DATA_LEN
        }
    );
}

#[test]
fn mixed_families_are_refused() {
    let err = Header::new(
        SocketType::STREAM,
        Protocol::TCP,
        "127.0.0.1:1".parse().unwrap(),
        "[::1]:1".parse().unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        EncodeError::FamilyMismatch {
            local: Family::Inet,
            remote: Family::Inet6
        }
    );
}

/// The golden header with one edit: (offset, bytes to write there).
fn golden_with(edits: &[(usize, &[u8])]) -> Vec<u8> {
    let mut b = hex(GOLDEN);
    for (at, bytes) in edits {
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    b
}

/// A header from raw fields: family, local image, remote image, data_len, then the
/// header_len to declare (None: the true one).
fn raw(family: u32, local: &[u8], remote: &[u8], data_len: u32, declared: Option<u16>) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&family.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes());
    h.extend_from_slice(&6u32.to_be_bytes());
    for ep in [local, remote] {
        h.extend_from_slice(&(ep.len() as u32).to_be_bytes());
        h.extend_from_slice(ep);
    }
    h.extend_from_slice(&data_len.to_be_bytes());
    let mut out = vec![0];
    out.extend_from_slice(&declared.unwrap_or(h.len() as u16).to_be_bytes());
    out.extend_from_slice(&h);
    out
}

fn v4_image(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[..2].copy_from_slice(&2u16.to_ne_bytes());
    v[4..8].copy_from_slice(&[127, 0, 0, 1]);
    v
}

#[test]
fn each_rule_has_its_own_error() {
    let v4 = v4_image(16);
    let mut v6 = vec![0u8; 28];
    v6[..2].copy_from_slice(&10u16.to_ne_bytes());
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        (
            "fd byte",
            golden_with(&[(0, &[1])]),
            DecodeError::FdByte { byte: 1 },
        ),
        (
            "header_len 283",
            golden_with(&[(1, &283u16.to_be_bytes())]),
            DecodeError::HeaderTooLong { len: 283, max: 282 },
        ),
        (
            "family 17",
            raw(17, &v4, &v4, 1, None),
            DecodeError::UnknownFamily { family: 17 },
        ),
        (
            "local 15 bytes",
            raw(2, &v4[..15], &v4, 1, None),
            DecodeError::EndpointTooShort {
                side: Side::Local,
                len: 15,
                family: Family::Inet,
                min: 16,
            },
        ),
        (
            "remote v6 27 bytes",
            raw(10, &v6, &v6[..27], 1, None),
            DecodeError::EndpointTooShort {
                side: Side::Remote,
                len: 27,
                family: Family::Inet6,
                min: 28,
            },
        ),
        (
            "remote 129 bytes",
            raw(2, &v4, &v4_image(129), 1, None),
            DecodeError::EndpointTooLong {
                side: Side::Remote,
                len: 129,
                family: Family::Inet,
                max: 128,
            },
        ),
        (
            "unix local 111 bytes",
            raw(1, &unix_image(111), &unix_image(2), 1, None),
            DecodeError::EndpointTooLong {
                side: Side::Local,
                len: 111,
                family: Family::Unix,
                max: 110,
            },
        ),
        (
            "unix remote 1 byte",
            raw(1, &unix_image(2), &[1], 1, None),
            DecodeError::EndpointTooShort {
                side: Side::Remote,
                len: 1,
                family: Family::Unix,
                min: 2,
            },
        ),
        (
            "v6 header, v4 local",
            raw(10, &v4_image(28), &v6, 1, None),
            DecodeError::EndpointFamily {
                side: Side::Local,
                found: 2,
                expected: Family::Inet6,
            },
        ),
        (
            "v4 header, v6 remote",
            raw(2, &v4, &v6, 1, None),
            DecodeError::EndpointFamily {
                side: Side::Remote,
                found: 10,
                expected: Family::Inet,
            },
        ),
        (
            "data 65536",
            raw(2, &v4, &v4, 65536, None),
            DecodeError::DataTooLong {
                len: 65536,
                max: 65535,
            },
        ),
        (
            "header_len 0",
            raw(2, &v4, &v4, 1, Some(0)),
            DecodeError::PastHeader {
                field: Field::Family,
                header_len: 0,
            },
        ),
        (
            "header_len cuts the protocol",
            raw(2, &v4, &v4, 1, Some(10)),
            DecodeError::PastHeader {
                field: Field::Protocol,
                header_len: 10,
            },
        ),
        (
            "header_len cuts the local endpoint",
            raw(2, &v4, &v4, 1, Some(20)),
            DecodeError::PastHeader {
                field: Field::Local,
                header_len: 20,
            },
        ),
        (
            "header_len cuts the remote length",
            raw(2, &v4, &v4, 1, Some(34)),
            DecodeError::PastHeader {
                field: Field::RemoteLen,
                header_len: 34,
            },
        ),
        (
            "header_len cuts the remote endpoint",
            raw(2, &v4, &v4, 1, Some(40)),
            DecodeError::PastHeader {
                field: Field::Remote,
                header_len: 40,
            },
        ),
        (
            "header_len cuts data_len",
            raw(2, &v4, &v4, 1, Some(54)),
            DecodeError::PastHeader {
                field: Field::DataLen,
                header_len: 54,
            },
        ),
    ];
    for (what, bytes, want) in cases {
        // With a trailing byte of slack, so that a declared length shorter than the
        // true one still has the whole declared header buffered.
        assert_eq!(decode(&bytes), Err(want.clone()), "{what}");
        assert!(!want.to_string().is_empty());
        assert!(!want.name().is_empty());
    }
}

fn unix_image(len: usize) -> Vec<u8> {
    let mut v = vec![b'a'; len];
    v[..2].copy_from_slice(&1u16.to_ne_bytes());
    v
}

#[test]
fn errors_come_as_soon_as_the_bad_byte_is_there() {
    assert_eq!(decode(&[7]), Err(DecodeError::FdByte { byte: 7 }));
    assert_eq!(
        decode(&[0, 0xff, 0xff]),
        Err(DecodeError::HeaderTooLong {
            len: 0xffff,
            max: 282
        })
    );
}

#[test]
fn slack_is_ignored() {
    // Endpoints longer than their sockaddr (sockaddr_storage images) and bytes after
    // data_len inside header_len both decode, to the same header.
    let mut long = v4_image(128);
    long[2..4].copy_from_slice(&37751u16.to_be_bytes());
    long[8] = 0xaa; // padding, ignored
    let mut bytes = raw(2, &long, &long, 5, Some(24 + 256 + 2));
    bytes.extend_from_slice(&[0xee, 0xee]);
    let f = complete(&bytes);
    assert_eq!(f.header().local().to_string(), "127.0.0.1:37751");
    assert_eq!(f.data_range(), 285..290);
    assert_eq!(f.header().header_len(), 56, "re-encodes canonically");
}

#[test]
fn unknown_type_and_protocol_pass_through() {
    let mut bytes = raw(2, &v4_image(16), &v4_image(16), 1, None);
    bytes[7..11].copy_from_slice(&3u32.to_be_bytes());
    bytes[11..15].copy_from_slice(&255u32.to_be_bytes());
    let f = complete(&bytes);
    assert_eq!(f.header().socket_type(), SocketType(3));
    assert_eq!(f.header().protocol(), Protocol(255));
}

/// Random edits of valid sessions: the decoder never panics, and whatever decodes
/// re-encodes to bytes that decode to the same header.
#[test]
fn random_edits_never_panic_and_canonicalise() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let samples: Vec<Vec<u8>> = sample_headers()
        .iter()
        .map(|h| wire(h, b"data", Mode::Extended))
        .collect();
    for _ in 0..200_000 {
        let mut b = samples[next() as usize % samples.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % b.len();
            b[at] = next() as u8;
        }
        let cut = next() as usize % (b.len() + 1);
        b.truncate(cut);
        if let Ok(Status::Complete(f)) = decode(&b) {
            let again = f.header().encode(f.data_len(), Mode::Extended).unwrap();
            let mut whole = again.to_vec();
            whole.resize(whole.len() + f.data_len(), 0);
            assert_eq!(complete(&whole).header(), f.header());
        }
    }
}
