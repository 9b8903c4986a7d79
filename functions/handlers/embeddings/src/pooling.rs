//! Sequence preparation and pooling for encoder models: truncation,
//! length-sorted batches with padding, mean pooling over the attention mask
//! and L2 normalisation (what sentence-transformers does for MiniLM-style
//! models).

/// Inputs per `compute` call.
pub const MAX_BATCH: usize = 32;

/// Id used for padding (BERT's `[PAD]`); padded positions carry
/// attention mask 0, so the id itself never matters to the output.
pub const PAD_ID: u32 = 0;

/// Truncates `ids` to at most `max_len` tokens, keeping the final token
/// (BERT's `[SEP]`) as the last one, as a tokenizer with truncation would.
pub fn truncate(ids: &mut Vec<u32>, max_len: usize) {
    if max_len == 0 || ids.len() <= max_len {
        return;
    }
    let last = ids[ids.len() - 1];
    ids.truncate(max_len);
    ids[max_len - 1] = last;
}

/// Groups input indices into batches of up to `max_batch`, shortest first,
/// so that inputs of similar length are padded together. Ties keep input
/// order (the sort is stable), so the plan is deterministic.
pub fn plan_batches(lengths: &[usize], max_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order.chunks(max_batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// The `[b, s]` `input_ids` and `attention_mask` of a batch, row-major,
/// padded to the longest sequence. Returns (ids, mask, s).
pub fn pad_batch(seqs: &[&[u32]]) -> (Vec<i64>, Vec<i64>, usize) {
    let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * width);
    let mut mask = Vec::with_capacity(seqs.len() * width);
    for seq in seqs {
        ids.extend(seq.iter().map(|&id| i64::from(id)));
        ids.extend(std::iter::repeat_n(i64::from(PAD_ID), width - seq.len()));
        mask.extend(std::iter::repeat_n(1i64, seq.len()));
        mask.extend(std::iter::repeat_n(0i64, width - seq.len()));
    }
    (ids, mask, width)
}

/// Mean of the hidden states at masked-in positions, per sequence, then
/// L2-normalised. `hidden` is `[b, s, h]` row-major and `mask` `[b, s]`.
pub fn mean_pool_normalized(hidden: &[f32], mask: &[i64], batch: usize, seq: usize, width: usize) -> Vec<Vec<f32>> {
    (0..batch)
        .map(|b| {
            let mut sum = vec![0f64; width];
            let mut count = 0usize;
            for s in 0..seq {
                if mask[b * seq + s] == 0 {
                    continue;
                }
                count += 1;
                let row = &hidden[(b * seq + s) * width..(b * seq + s + 1) * width];
                for (acc, &x) in sum.iter_mut().zip(row) {
                    *acc += f64::from(x);
                }
            }
            // sentence-transformers clamps the count to avoid 0/0.
            let count = count.max(1) as f64;
            let mut v: Vec<f32> = sum.iter().map(|&x| (x / count) as f32).collect();
            l2_normalize(&mut v);
            v
        })
        .collect()
}

/// Scales `v` to unit length (a zero vector stays zero, like
/// `torch.nn.functional.normalize` with its epsilon).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let norm = norm.max(1e-12);
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_final_token() {
        let mut ids = vec![101, 1, 2, 3, 4, 102];
        truncate(&mut ids, 4);
        assert_eq!(ids, [101, 1, 2, 102]);
        let mut short = vec![101, 5, 102];
        truncate(&mut short, 4);
        assert_eq!(short, [101, 5, 102]);
    }

    #[test]
    fn batches_are_sorted_by_length_and_bounded() {
        let lengths = [5, 1, 3, 1, 9];
        assert_eq!(plan_batches(&lengths, 2), vec![vec![1, 3], vec![2, 0], vec![4]]);
        let many = vec![3; 70];
        let plan = plan_batches(&many, MAX_BATCH);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [32, 32, 6]);
    }

    #[test]
    fn padding_and_mask() {
        let (ids, mask, width) = pad_batch(&[&[7, 8, 9], &[5]]);
        assert_eq!(width, 3);
        assert_eq!(ids, [7, 8, 9, 5, 0, 0]);
        assert_eq!(mask, [1, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn mean_pooling_ignores_padding_and_normalises() {
        // Two sequences of length 2 (second one padded), hidden size 2.
        let hidden = [
            1.0, 0.0, 3.0, 4.0, // seq 0: mean (2, 2)
            0.0, 5.0, 100.0, 100.0, // seq 1: only the first position counts
        ];
        let mask = [1, 1, 1, 0];
        let out = mean_pool_normalized(&hidden, &mask, 2, 2, 2);
        let s = 1.0 / 2f32.sqrt();
        assert!((out[0][0] - s).abs() < 1e-6 && (out[0][1] - s).abs() < 1e-6, "{:?}", out[0]);
        assert_eq!(out[1], [0.0, 1.0]);
        for v in &out {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn zero_vector_stays_finite() {
        let mut v = [0.0f32; 3];
        l2_normalize(&mut v);
        assert_eq!(v, [0.0; 3]);
    }
}
