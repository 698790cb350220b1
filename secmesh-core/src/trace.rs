//! Transaction and trace identifiers, and the W3C `traceparent` header.
//!
//! A transaction id (`txn`) is 32 lowercase hex digits, the same value as the W3C trace-id when
//! one is present, so that audit records and traces line up. All-zero ids are invalid.
//!
//! # Example
//! ```
//! use secmesh_core::trace::{SpanId, TraceParent};
//!
//! let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
//! assert!(tp.sampled());
//! let child = tp.child(SpanId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]).unwrap());
//! assert_eq!(child.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
//! assert_eq!(child.trace_id().to_string(), tp.trace_id().to_string());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier or a `traceparent` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Not the expected number of characters.
    #[error("wrong length")]
    Length,
    /// A character that is not a lowercase hex digit.
    #[error("not lowercase hex")]
    NotHex,
    /// An all-zero id, which W3C Trace Context forbids.
    #[error("all-zero id")]
    Zero,
    /// The `traceparent` value is not `version-traceid-parentid-flags`.
    #[error("malformed traceparent")]
    Malformed,
    /// Version `ff`, which is forbidden.
    #[error("forbidden traceparent version")]
    Version,
}

fn hex_digit(b: u8) -> Result<u8, TraceError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(TraceError::NotHex),
    }
}

fn decode_hex<const N: usize>(s: &[u8]) -> Result<[u8; N], TraceError> {
    if s.len() != N * 2 {
        return Err(TraceError::Length);
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (chunk, b) in buf.chunks_exact_mut(2).zip(bytes) {
        chunk[0] = HEX[usize::from(b >> 4)];
        chunk[1] = HEX[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&buf[..bytes.len() * 2]).map_err(|_| fmt::Error)?)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The id from raw bytes; all-zero is rejected.
            pub fn from_bytes(bytes: [u8; $len]) -> Result<Self, TraceError> {
                if bytes == [0u8; $len] {
                    return Err(TraceError::Zero);
                }
                Ok($name(bytes))
            }

            /// The raw bytes.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = TraceError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::from_bytes(decode_hex::<$len>(s.as_bytes())?)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                f.write_str(")")
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A transaction id: the `txn` claim, 16 bytes written as 32 lowercase hex digits.
    TxnId,
    16
);
hex_id!(
    /// A W3C trace-id: 16 bytes, 32 lowercase hex digits, never all zero.
    TraceId,
    16
);
hex_id!(
    /// A W3C span (parent) id: 8 bytes, 16 lowercase hex digits, never all zero.
    SpanId,
    8
);

impl From<TraceId> for TxnId {
    fn from(t: TraceId) -> Self {
        TxnId(t.0)
    }
}

impl From<TxnId> for TraceId {
    fn from(t: TxnId) -> Self {
        TraceId(t.0)
    }
}

/// A parsed W3C Trace Context `traceparent` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    version: u8,
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

impl TraceParent {
    /// The `sampled` flag bit.
    pub const SAMPLED: u8 = 0x01;

    /// A version-00 `traceparent` with the given ids and flags.
    pub const fn new(trace_id: TraceId, parent_id: SpanId, flags: u8) -> Self {
        TraceParent {
            version: 0,
            trace_id,
            parent_id,
            flags,
        }
    }

    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent (span) id.
    pub const fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags byte.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled this trace.
    pub const fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// The `traceparent` to send downstream from a new span: same trace and flags, new parent id,
    /// always written as version 00.
    pub const fn child(&self, span: SpanId) -> Self {
        TraceParent::new(self.trace_id, span, self.flags)
    }
}

impl FromStr for TraceParent {
    type Err = TraceError;

    /// Parses a header value. Version 00 must be exactly 55 characters; a higher version may
    /// carry more fields after a `-`, which are ignored as the specification asks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() < 55 {
            return Err(TraceError::Malformed);
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceError::Malformed);
        }
        let [version] = decode_hex::<1>(&b[0..2])?;
        if version == 0xff {
            return Err(TraceError::Version);
        }
        if version == 0 && b.len() != 55 {
            return Err(TraceError::Malformed);
        }
        if b.len() > 55 && b[55] != b'-' {
            return Err(TraceError::Malformed);
        }
        let trace_id = TraceId::from_bytes(decode_hex(&b[3..35])?)?;
        let parent_id = SpanId::from_bytes(decode_hex(&b[36..52])?)?;
        let [flags] = decode_hex::<1>(&b[53..55])?;
        Ok(TraceParent {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats() {
        let tp: TraceParent = TP.parse().unwrap();
        assert_eq!(tp.to_string(), TP);
        assert_eq!(tp.flags(), 1);
        assert_eq!(tp.parent_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("", TraceError::Malformed),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceError::Zero,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceError::Zero,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceError::NotHex,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceError::Version,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                TraceError::Malformed,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceError::Malformed,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceError::NotHex,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                TraceError::Malformed,
            ),
        ];
        for (s, e) in cases {
            assert_eq!(s.parse::<TraceParent>(), Err(e), "{s}");
        }
    }

    #[test]
    fn future_versions_may_extend() {
        let tp: TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
            .parse()
            .unwrap();
        assert_eq!(tp.to_string(), TP);
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert!(s.parse::<TraceParent>().is_err());
    }

    #[test]
    fn txn_ids() {
        let t: TxnId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(TraceId::from(t).to_string(), t.to_string());
        assert_eq!(format!("{t:?}"), "TxnId(4bf92f3577b34da6a3ce929d0e0e4736)");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"4bf92f3577b34da6a3ce929d0e0e4736\""
        );
        assert!(serde_json::from_str::<TxnId>("\"4bf9\"").is_err());
        assert!("4bf92f3577b34da6a3ce929d0e0e473".parse::<TxnId>().is_err());
    }
}
