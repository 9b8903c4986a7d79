//! One row of logits, read where the host's tensor bytes landed.
//!
//! A row is the whole vocabulary (49k floats, ~200 KB, for SmolLM2) and
//! arrives every generated token as the little-endian bytes of a wasi:nn
//! tensor. WebAssembly is little-endian and the guest allocator aligns the
//! received list, so those bytes already are the `f32` values: viewing them
//! in place saves a pass over the row each token. Anything else (misaligned
//! bytes, a row inside a longer tensor, the tests' literal rows) is copied
//! into owned values.

use std::ops::{Deref, DerefMut};

/// Logits of the last position, one per vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits(Data);

#[derive(Debug, Clone, PartialEq)]
enum Data {
    /// Aligned little-endian `f32` bytes, a whole number of values.
    Bytes(Vec<u8>),
    Values(Vec<f32>),
}

impl Logits {
    /// The row held in `bytes` from `offset` to the end (a multiple of 4
    /// bytes): in place when that is the whole buffer and aligned,
    /// otherwise copied.
    pub fn from_le_bytes(bytes: Vec<u8>, offset: usize) -> Self {
        let in_place = cfg!(target_endian = "little") && offset == 0 && bytemuck::try_cast_slice::<u8, f32>(&bytes).is_ok();
        if in_place {
            return Self(Data::Bytes(bytes));
        }
        Self(Data::Values(bytes[offset..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
    }
}

impl From<Vec<f32>> for Logits {
    fn from(values: Vec<f32>) -> Self {
        Self(Data::Values(values))
    }
}

impl Deref for Logits {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            // Checked aligned and sized when made; the buffer never moves.
            Data::Bytes(b) => bytemuck::cast_slice(b),
            Data::Values(v) => v,
        }
    }
}

impl DerefMut for Logits {
    fn deref_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            Data::Bytes(b) => bytemuck::cast_slice_mut(b),
            Data::Values(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn aligned_bytes_are_read_in_place_and_writable() {
        let mut l = Logits::from_le_bytes(le(&[1.0, -2.5, 3.0]), 0);
        assert!(matches!(l.0, Data::Bytes(_)));
        assert_eq!(&l[..], [1.0, -2.5, 3.0]);
        l[1] = f32::NEG_INFINITY;
        assert_eq!(&l[..], [1.0, f32::NEG_INFINITY, 3.0]);
    }

    #[test]
    fn a_row_inside_a_longer_tensor_is_copied() {
        let l = Logits::from_le_bytes(le(&[1.0, 2.0, 3.0, 4.0]), 8);
        assert!(matches!(l.0, Data::Values(_)));
        assert_eq!(&l[..], [3.0, 4.0]);
    }

    #[test]
    fn misaligned_bytes_are_copied() {
        // The same values one byte into a buffer: never 4-aligned there.
        let mut buf = vec![0u8];
        buf.extend(le(&[7.0, 8.0]));
        let shifted = buf[1..].to_vec();
        let aligned = Logits::from_le_bytes(shifted.clone(), 0);
        assert_eq!(&aligned[..], [7.0, 8.0]);
        let l = Logits::from_le_bytes(buf, 1);
        assert!(matches!(l.0, Data::Values(_)));
        assert_eq!(&l[..], [7.0, 8.0]);
    }
}
