//! Frame checksums.
//!
//! Every released Lance server computes **IEEE CRC-32** (the zlib / Ethernet CRC,
//! reflected polynomial `0xEDB88320`) over the header's first eight bytes and over the
//! payload, through a function it happens to call `crc32c` (docs/protocol.md §2.3). The
//! published LWP specification asks for CRC-32C (Castagnoli) instead; a client that
//! follows the specification has every frame rejected by a silent TCP close.
//!
//! [`Checksum::Ieee`] is therefore the default. [`Checksum::Castagnoli`] exists for
//! servers that implement the specification literally. Both are hardware accelerated:
//! `crc32fast` uses PCLMULQDQ folding on x86-64 and the CRC instructions on ARMv8, and
//! `crc32c` uses SSE4.2 `crc32` (or the ARMv8 CRC instructions).

use std::fmt;

/// Which CRC-32 both ends compute over headers and payloads.
///
/// # Examples
///
/// ```
/// use lnc_uring::proto::Checksum;
///
/// assert_eq!(Checksum::default(), Checksum::Ieee);
/// assert_eq!(Checksum::Ieee.compute(b"hello"), 0x3610_A686);
/// assert_eq!(Checksum::Castagnoli.compute(b"hello"), 0x9A71_BB4C);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// IEEE 802.3 CRC-32 (CRC-32/ISO-HDLC, zlib's `crc32`), what every released Lance
    /// server computes. Computed by the `crc32fast` crate.
    #[default]
    Ieee,
    /// CRC-32C (Castagnoli), what the published LWP specification names. Computed by
    /// the `crc32c` crate. A released Lance server closes the connection on the first
    /// frame checksummed this way.
    Castagnoli,
}

impl Checksum {
    /// The checksum of `data`.
    #[inline]
    pub fn compute(self, data: &[u8]) -> u32 {
        match self {
            Checksum::Ieee => crc32fast::hash(data),
            Checksum::Castagnoli => crc32c::crc32c(data),
        }
    }

    /// Continues a checksum: `append(compute(a), b) == compute(a ++ b)`.
    ///
    /// ```
    /// use lnc_uring::proto::Checksum;
    ///
    /// for c in [Checksum::Ieee, Checksum::Castagnoli] {
    ///     assert_eq!(c.append(c.compute(b"hel"), b"lo"), c.compute(b"hello"));
    /// }
    /// ```
    #[inline]
    pub fn append(self, crc: u32, data: &[u8]) -> u32 {
        match self {
            Checksum::Ieee => {
                let mut h = crc32fast::Hasher::new_with_initial(crc);
                h.update(data);
                h.finalize()
            }
            Checksum::Castagnoli => crc32c::crc32c_append(crc, data),
        }
    }

    /// The name used in configuration and logs: `"ieee"` or `"castagnoli"`.
    pub fn name(self) -> &'static str {
        match self {
            Checksum::Ieee => "ieee",
            Checksum::Castagnoli => "castagnoli",
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Checksum {
    type Err = String;

    /// Parses `ieee` / `crc32`, or `castagnoli` / `crc32c` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ieee" | "crc32" | "crc-32" => Ok(Checksum::Ieee),
            "castagnoli" | "crc32c" | "crc-32c" => Ok(Checksum::Castagnoli),
            other => Err(format!(
                "unknown checksum {other:?} (expected \"ieee\" or \"castagnoli\")"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // docs/protocol.md §2.3 reference values.
    const VECTORS: &[(&[u8], u32, u32)] = &[
        (b"", 0x0000_0000, 0x0000_0000),
        (b"a", 0xE8B7_BE43, 0xC1D0_4330),
        (b"hello", 0x3610_A686, 0x9A71_BB4C),
        (b"123456789", 0xCBF4_3926, 0xE306_9283),
        (b"test", 0xD87F_7E0C, 0x86A0_72C0),
        (b"events", 0x5387_574A, 0x349D_C3DA),
    ];

    #[test]
    fn reference_values() {
        for &(input, ieee, castagnoli) in VECTORS {
            assert_eq!(Checksum::Ieee.compute(input), ieee, "ieee {input:?}");
            assert_eq!(
                Checksum::Castagnoli.compute(input),
                castagnoli,
                "castagnoli {input:?}"
            );
        }
    }

    #[test]
    fn parse_names() {
        assert_eq!("IEEE".parse::<Checksum>().unwrap(), Checksum::Ieee);
        assert_eq!("crc32c".parse::<Checksum>().unwrap(), Checksum::Castagnoli);
        assert!("md5".parse::<Checksum>().is_err());
        assert_eq!(Checksum::Castagnoli.to_string(), "castagnoli");
    }
}
