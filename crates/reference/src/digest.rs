//! Content digests (`algorithm:hex`) as go-digest parses them.

use std::fmt;
use std::str::FromStr;

use crate::ReferenceError;

/// A validated content digest such as `sha256:<64 lowercase hex>`.
///
/// Only the algorithms go-digest registers are accepted (sha256, sha384, sha512), with the hex
/// length each one implies; uppercase hex is refused as go-digest refuses it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// `algorithm:hex`, kept whole so `as_str` and `Display` cost nothing.
    text: String,
    colon: usize,
}

impl Digest {
    /// Builds a sha256 digest from the raw 32-byte hash output.
    pub fn sha256_from_bytes(hash: &[u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for b in hash {
            text.push(HEX[usize::from(b >> 4)] as char);
            text.push(HEX[usize::from(b & 0xf)] as char);
        }
        Digest { text, colon: 6 }
    }

    /// Parses `sha256:<hex>` and friends; the error text matches go-digest's.
    pub fn parse(s: &str) -> Result<Digest, ReferenceError> {
        let colon = s.find(':').ok_or(ReferenceError::InvalidDigestFormat)?;
        let (algorithm, hex) = (&s[..colon], &s[colon + 1..]);
        if algorithm.is_empty() || hex.is_empty() {
            return Err(ReferenceError::InvalidDigestFormat);
        }
        // go-digest: the algorithm must match [a-z0-9]+([+._-][a-z0-9]+)* before it is looked up.
        if !algorithm_grammar_ok(algorithm) {
            return Err(ReferenceError::InvalidDigestFormat);
        }
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            // go-digest only calls an algorithm unsupported once the whole digest matches its
            // general grammar.
            _ if !encoded_grammar_ok(hex) => return Err(ReferenceError::InvalidDigestFormat),
            _ => return Err(ReferenceError::UnsupportedDigestAlgorithm),
        };
        if hex.len() != want {
            return Err(ReferenceError::InvalidDigestLength);
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::InvalidDigestFormat);
        }
        Ok(Digest {
            text: s.to_owned(),
            colon,
        })
    }

    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 12 hex characters, as docker shows image and layer ids.
    pub fn short_id(&self) -> &str {
        let hex = self.hex();
        &hex[..hex.len().min(12)]
    }
}

fn algorithm_grammar_ok(algorithm: &str) -> bool {
    let mut prev_sep = true;
    for b in algorithm.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

/// go-digest's encoded part for any algorithm: `[a-zA-Z0-9=_-]+` (room for base64 encodings).
fn encoded_grammar_ok(encoded: &str) -> bool {
    encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Digest, ReferenceError> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_splits() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.short_id(), "e3b0c44298fc");
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn from_bytes_matches_text() {
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::from_str_radix(&HEX[i * 2..i * 2 + 2], 16).unwrap();
        }
        assert_eq!(
            Digest::sha256_from_bytes(&raw).as_str(),
            format!("sha256:{HEX}")
        );
    }

    #[test]
    fn refuses_bad_digests_with_go_digest_wording() {
        let upper = format!("sha256:{}", HEX.to_uppercase());
        let cases: &[(&str, &str)] = &[
            ("sha256", "invalid checksum digest format"),
            ("sha256:", "invalid checksum digest format"),
            (":abc", "invalid checksum digest format"),
            (&upper, "invalid checksum digest format"),
            ("sha256:abc", "invalid checksum digest length"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported digest algorithm",
            ),
            ("SHA256:abc", "invalid checksum digest format"),
            ("md5:d41d8cd9+", "invalid checksum digest format"),
            ("md5:a=_-Z", "unsupported digest algorithm"),
        ];
        for (input, want) in cases {
            let err = Digest::parse(input).unwrap_err();
            assert_eq!(err.to_string(), *want, "{input}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{HEX}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
