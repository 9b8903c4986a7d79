//! How token sequences become sentence embeddings: truncation, length-sorted
//! batches with padding, mean pooling over the attention mask and L2
//! normalisation (what sentence-transformers does for MiniLM-style models).
//!
//! One crate, two users: the embeddings handler (`POST /v1/embeddings`, in a
//! guest) and the host's knowledge bases (chunks and queries, without a guest
//! instance). Both run [`embed`], so a query embedded by the host lands where
//! the same text embedded through the API would. Plain Rust, no dependencies,
//! so it builds for wasm32-wasip2 and for the host alike.

/// Inputs per `compute` call.
pub const MAX_BATCH: usize = 32;

/// Id used for padding (BERT's `[PAD]`); padded positions carry
/// attention mask 0, so the id itself never matters to the output.
pub const PAD_ID: u32 = 0;

/// Why [`embed`] stopped: an input with no tokens, or the encoder's own error.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedError<E> {
    /// The input at this index produced no tokens.
    Empty(usize),
    /// `run` failed.
    Run(E),
}

/// The `[b, s, h]` hidden states of one batch, as (row-major values, `h`).
pub type Hidden = (Vec<f32>, usize);

/// Embeds token sequences, in input order: each truncated to `max_len` (0: no
/// limit), grouped into batches of up to [`MAX_BATCH`] shortest first, padded,
/// run by `run(ids, mask, batch, seq)` (both `[batch, seq]`, row-major), and
/// mean-pooled over the mask, L2-normalised. `run` must answer `[batch, seq, h]`
/// values; a wrong count is its error to report, so it is checked there.
pub fn embed<E>(
    mut seqs: Vec<Vec<u32>>,
    max_len: usize,
    mut run: impl FnMut(&[i64], &[i64], usize, usize) -> Result<Hidden, E>,
) -> Result<Vec<Vec<f32>>, EmbedError<E>> {
    for (i, seq) in seqs.iter_mut().enumerate() {
        truncate(seq, max_len);
        if seq.is_empty() {
            return Err(EmbedError::Empty(i));
        }
    }
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let mut embeddings: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
    for members in plan_batches(&lengths, MAX_BATCH) {
        let batch: Vec<&[u32]> = members.iter().map(|&i| seqs[i].as_slice()).collect();
        let (ids, mask, width) = pad_batch(&batch);
        let (hidden, h) = run(&ids, &mask, batch.len(), width).map_err(EmbedError::Run)?;
        for (&i, v) in members.iter().zip(mean_pool_normalized(&hidden, &mask, batch.len(), width, h)) {
            embeddings[i] = v;
        }
    }
    Ok(embeddings)
}

/// How many of `len` tokens [`truncate`] keeps (`max_len` 0: no limit): what a
/// request is billed for.
pub fn truncated_len(len: usize, max_len: usize) -> usize {
    if max_len == 0 { len } else { len.min(max_len) }
}

/// Truncates `ids` to at most `max_len` tokens, keeping the final token
/// (BERT's `[SEP]`) as the last one, as a tokenizer with truncation would.
pub fn truncate(ids: &mut Vec<u32>, max_len: usize) {
    let keep = truncated_len(ids.len(), max_len);
    if keep == ids.len() {
        return;
    }
    let last = ids[ids.len() - 1];
    ids.truncate(keep);
    ids[keep - 1] = last;
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
        assert_eq!((truncated_len(6, 4), truncated_len(3, 4), truncated_len(9, 0)), (4, 3, 9));
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
    fn embed_answers_in_input_order_and_refuses_empty_inputs() {
        // A fake encoder whose hidden state at each position is (id, 1): the pooled
        // vector's direction tells which input it came from.
        let run = |ids: &[i64], _mask: &[i64], b: usize, s: usize| -> Result<Hidden, ()> {
            assert_eq!(ids.len(), b * s);
            Ok((ids.iter().flat_map(|&id| [id as f32, 1.0]).collect(), 2))
        };
        let out = embed(vec![vec![3, 3, 3], vec![1]], 0, run).unwrap();
        let expect = |x: f32| {
            let n = (x * x + 1.0).sqrt();
            [x / n, 1.0 / n]
        };
        assert!(out[0].iter().zip(expect(3.0)).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
        assert!(out[1].iter().zip(expect(1.0)).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
        assert_eq!(embed(vec![vec![1], vec![]], 0, run), Err(EmbedError::Empty(1)));
        assert_eq!(embed(vec![vec![1]], 0, |_, _, _, _| Err::<Hidden, _>("boom")), Err(EmbedError::Run("boom")));
    }

    #[test]
    fn zero_vector_stays_finite() {
        let mut v = [0.0f32; 3];
        l2_normalize(&mut v);
        assert_eq!(v, [0.0; 3]);
    }
}
