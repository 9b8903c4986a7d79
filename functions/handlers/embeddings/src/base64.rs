//! Standard base64 (RFC 4648, with padding) of embeddings, for
//! `encoding_format: "base64"`: the little-endian bytes of the f32 values,
//! which the OpenAI SDKs decode with `numpy.frombuffer(..., dtype=float32)`.
//! A few lines instead of a dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 of the little-endian bytes of `values`.
pub fn encode_f32s(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward decoder, for round trips.
    fn decode(s: &str) -> Vec<u8> {
        let value = |c: u8| ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        let mut out = Vec::new();
        for chunk in s.as_bytes().chunks(4) {
            let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
            let mut n = 0u32;
            for (i, &c) in data.iter().enumerate() {
                n |= value(c) << (18 - 6 * i);
            }
            for i in 0..data.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded), plain.as_bytes());
        }
    }

    #[test]
    fn f32s_round_trip() {
        let values = [0.0f32, -1.5, 3.25e-7, f32::MAX, 0.1, -0.0];
        let bytes = decode(&encode_f32s(&values));
        let back: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        // 1.0f32 is 00 00 80 3f little-endian.
        assert_eq!(encode_f32s(&[1.0]), "AACAPw==");
    }
}
