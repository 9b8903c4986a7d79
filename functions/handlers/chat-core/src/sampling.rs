//! Token selection from one row of logits: `logit_bias`, presence/frequency
//! penalties, temperature, nucleus (`top_p`) sampling and a seeded PRNG.
//!
//! The order follows OpenAI's description: bias and penalties adjust the raw
//! logits, then temperature 0 picks the argmax, otherwise the adjusted logits
//! are divided by the temperature, turned into probabilities, cut to the
//! nucleus and sampled. Everything is deterministic given the seed: the
//! candidates are always visited in a fixed order (ties broken by the lower
//! token id), so the same request with the same `seed` gives the same text.

use std::collections::HashMap;

/// The sampling knobs of one request, resolved against the model defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass in (0, 1].
    pub top_p: f32,
    /// OpenAI `presence_penalty`.
    pub presence_penalty: f32,
    /// OpenAI `frequency_penalty`.
    pub frequency_penalty: f32,
    /// (token id, bias) pairs added to the logits.
    pub logit_bias: Vec<(u32, f32)>,
}

impl SamplingParams {
    /// Whether presence or frequency penalties are set.
    fn penalises(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

/// A bias at or below this bans the token outright. OpenAI documents -100 as
/// "should result in a ban"; adding -100 to a logit only makes it unlikely,
/// so it is made impossible instead.
const BAN: f32 = -100.0;

/// xoshiro256** seeded through splitmix64: small, fast, good statistical
/// quality, and the same sequence on every platform (no dependency whose
/// output could change between versions).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of splitmix64, the recommended seeder for xoshiro.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for choice `choice` of a request with seed `seed`. The
    /// choice index is mixed in so that `n` choices differ from each other
    /// while each stays reproducible.
    pub fn for_choice(seed: u64, choice: u32) -> Self {
        let mut state = seed;
        // Advance past the seed once per choice index: distinct, well-mixed
        // starting points without correlating seeds `s` and `s + 1`.
        let mut mix = splitmix64(&mut state) ^ (choice as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let s = [splitmix64(&mut mix), splitmix64(&mut mix), splitmix64(&mut mix), splitmix64(&mut mix)];
        Self { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform draw in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks tokens for one sequence, remembering what it generated for the
/// penalties.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// How often each generated token occurred (OpenAI's `c[j]`).
    counts: HashMap<u32, u32>,
    /// Reused buffer for the adjusted logits.
    scratch: Vec<f32>,
}

impl Sampler {
    /// A sampler with its own random stream.
    pub fn new(params: SamplingParams, rng: Rng) -> Self {
        Self { params, rng, counts: HashMap::new(), scratch: Vec::new() }
    }

    /// Chooses the next token from raw logits (left untouched, so the caller
    /// can still report log probabilities of the raw distribution).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let penalised = self.params.penalises() && !self.counts.is_empty();
        if self.params.temperature <= 0.0 && self.params.logit_bias.is_empty() && !penalised {
            // Nothing to adjust: skip copying the row (~200 KB, every step).
            return argmax(logits);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(logits);
        adjust_logits(&mut self.scratch, &self.params, &self.counts);
        if self.params.temperature <= 0.0 {
            return argmax(&self.scratch);
        }
        sample_adjusted(&mut self.scratch, self.params.temperature, self.params.top_p, &mut self.rng)
    }

    /// Records a generated token for the penalties.
    pub fn record(&mut self, token: u32) {
        *self.counts.entry(token).or_insert(0) += 1;
    }
}

/// Applies `logit_bias`, then OpenAI's penalties:
/// `mu[j] -= c[j] * frequency_penalty + (c[j] > 0) * presence_penalty`,
/// where `c[j]` counts token `j` among the tokens generated so far.
pub fn adjust_logits(logits: &mut [f32], params: &SamplingParams, counts: &HashMap<u32, u32>) {
    for &(id, bias) in &params.logit_bias {
        if let Some(x) = logits.get_mut(id as usize) {
            *x = if bias <= BAN { f32::NEG_INFINITY } else { *x + bias };
        }
    }
    if params.penalises() {
        for (&id, &count) in counts {
            if let Some(x) = logits.get_mut(id as usize) {
                *x -= count as f32 * params.frequency_penalty + if count > 0 { params.presence_penalty } else { 0.0 };
            }
        }
    }
}

/// Index of the largest logit; ties go to the lowest id, NaN never wins.
///
/// Runs once per generated token over the whole vocabulary (49k for
/// SmolLM2), so it keeps `LANES` independent maxima (SIMD lanes in the
/// WebAssembly build, see [`lane_maxima`]) rather than one running maximum,
/// a serial chain of compares; then picks the best lane.
pub fn argmax(logits: &[f32]) -> u32 {
    let (chunks, tail) = logits.as_chunks::<LANES>();
    let (best, at) = lane_maxima(chunks);
    let (mut value, mut index) = (f32::NEG_INFINITY, 0u32);
    // A lane left at -inf never moved from index 0, so it cannot win a tie.
    for l in 0..LANES {
        if best[l] > value || (best[l] == value && at[l] < index) {
            value = best[l];
            index = at[l];
        }
    }
    let start = logits.len() - tail.len();
    for (i, &x) in tail.iter().enumerate() {
        // Every tail index is above every lane's: only a larger value wins.
        if x > value {
            value = x;
            index = (start + i) as u32;
        }
    }
    index
}

const LANES: usize = 16;

/// Per lane `l`: the largest value at indices `l`, `l + LANES`, ... and its
/// first index (strictly greater replaces, so ties keep the lowest index; a
/// lane that saw only NaN or -inf stays at -inf, index 0).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn lane_maxima(chunks: &[[f32; LANES]]) -> ([f32; LANES], [u32; LANES]) {
    use core::arch::wasm32::{
        f32x4_extract_lane, f32x4_gt, f32x4_splat, u32x4, u32x4_add, u32x4_extract_lane, u32x4_splat, v128, v128_bitselect,
    };
    let mut best = [f32x4_splat(f32::NEG_INFINITY); 4];
    let mut at = [u32x4_splat(0); 4];
    let mut index = [u32x4(0, 1, 2, 3), u32x4(4, 5, 6, 7), u32x4(8, 9, 10, 11), u32x4(12, 13, 14, 15)];
    let step = u32x4_splat(LANES as u32);
    for c in chunks {
        for k in 0..4 {
            // One unaligned 16-byte load (building the vector from four
            // floats compiles to four lane loads).
            let v: v128 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&c[4 * k..4 * k + 4]));
            let take = f32x4_gt(v, best[k]);
            best[k] = v128_bitselect(v, best[k], take);
            at[k] = v128_bitselect(index[k], at[k], take);
            index[k] = u32x4_add(index[k], step);
        }
    }
    let mut values = [0.0; LANES];
    let mut indices = [0; LANES];
    for k in 0..4 {
        values[4 * k] = f32x4_extract_lane::<0>(best[k]);
        values[4 * k + 1] = f32x4_extract_lane::<1>(best[k]);
        values[4 * k + 2] = f32x4_extract_lane::<2>(best[k]);
        values[4 * k + 3] = f32x4_extract_lane::<3>(best[k]);
        indices[4 * k] = u32x4_extract_lane::<0>(at[k]);
        indices[4 * k + 1] = u32x4_extract_lane::<1>(at[k]);
        indices[4 * k + 2] = u32x4_extract_lane::<2>(at[k]);
        indices[4 * k + 3] = u32x4_extract_lane::<3>(at[k]);
    }
    (values, indices)
}

/// The same without SIMD (native builds, where the tests run).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn lane_maxima(chunks: &[[f32; LANES]]) -> ([f32; LANES], [u32; LANES]) {
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [0u32; LANES];
    for (c, chunk) in chunks.iter().enumerate() {
        let base = (c * LANES) as u32;
        for l in 0..LANES {
            if chunk[l] > best[l] {
                best[l] = chunk[l];
                at[l] = base + l as u32;
            }
        }
    }
    (best, at)
}

/// Temperature, softmax, nucleus and a draw, over adjusted logits (which are
/// overwritten with unnormalised probabilities).
pub fn sample_adjusted(logits: &mut [f32], temperature: f32, top_p: f32, rng: &mut Rng) -> u32 {
    let max = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if max.is_infinite() {
        // Everything banned (or an infinite logit, which wins outright).
        return argmax(logits);
    }
    // exp((x - max) / T): the largest weight is 1, so no overflow.
    let mut total = 0f64;
    for x in logits.iter_mut() {
        let w = if x.is_nan() { 0.0 } else { ((*x - max) / temperature).exp() };
        *x = w;
        total += w as f64;
    }
    let weights: &[f32] = logits;

    if top_p >= 1.0 {
        return draw(weights.iter().enumerate().map(|(i, &w)| (i as u32, w)), total, rng).unwrap_or_else(|| argmax(weights));
    }

    // The nucleus: the most likely tokens until their mass reaches top_p
    // (always at least one). Sorted by weight, then id, for determinism.
    let mut order: Vec<u32> = (0..weights.len() as u32).filter(|&i| weights[i as usize] > 0.0).collect();
    let rank = |a: &u32, b: &u32| weights[*b as usize].total_cmp(&weights[*a as usize]).then(a.cmp(b));
    // Sorting a 100k+ vocabulary per token is slow in wasm, and the nucleus
    // is nearly always among the first few hundred tokens: sort only the
    // best HEAD, and the rest only if their mass falls short. `rank` is a
    // total order, so the result equals a full sort.
    const HEAD: usize = 1024;
    let head = HEAD.min(order.len());
    if order.len() > head {
        order.select_nth_unstable_by(head - 1, rank);
    }
    order[..head].sort_unstable_by(rank);
    let target = top_p as f64 * total;
    let mut mass = 0f64;
    let mut keep = 0;
    let mut sorted_tail = false;
    while keep < order.len() {
        if keep == head && !sorted_tail {
            order[head..].sort_unstable_by(rank);
            sorted_tail = true;
        }
        mass += weights[order[keep] as usize] as f64;
        keep += 1;
        if mass >= target {
            break;
        }
    }
    if order.is_empty() {
        return argmax(weights);
    }
    let nucleus = &order[..keep.max(1)];
    draw(nucleus.iter().map(|&i| (i, weights[i as usize])), mass, rng).unwrap_or(nucleus[0])
}

/// Draws one id with probability proportional to its weight.
fn draw(candidates: impl Iterator<Item = (u32, f32)>, total: f64, rng: &mut Rng) -> Option<u32> {
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return None;
    }
    let target = rng.next_f64() * total;
    let mut acc = 0f64;
    let mut last = None;
    for (id, w) in candidates {
        if w <= 0.0 {
            continue;
        }
        acc += w as f64;
        last = Some(id);
        if acc > target {
            return Some(id);
        }
    }
    // Rounding left the target just past the sum: the last candidate.
    last
}

/// `log(sum(exp(x)))` of the raw logits, for log-softmax.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().filter(|x| !x.is_nan()).map(|&x| ((x - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// The `k` largest logits as (id, logit), descending, ties by lower id.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &x) in logits.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        let item = (i as u32, x);
        // Keep `top` sorted; most logits are rejected by this first test.
        if top.len() == k && better(&top[k - 1], &item).is_lt() {
            continue;
        }
        let at = top.partition_point(|t| better(t, &item).is_lt());
        top.insert(at, item);
        top.truncate(k);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32) -> SamplingParams {
        SamplingParams { temperature, top_p, presence_penalty: 0.0, frequency_penalty: 0.0, logit_bias: Vec::new() }
    }

    fn rng(seed: u64) -> Rng {
        Rng::for_choice(seed, 0)
    }

    #[test]
    fn greedy_picks_argmax_lowest_id_on_ties() {
        let mut s = Sampler::new(params(0.0, 1.0), rng(1));
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9]), 1);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.1]), 1);
    }

    #[test]
    fn lane_argmax_matches_a_single_running_maximum() {
        fn reference(logits: &[f32]) -> u32 {
            let (mut best, mut value) = (0, f32::NEG_INFINITY);
            for (i, &x) in logits.iter().enumerate() {
                if x > value {
                    (best, value) = (i as u32, x);
                }
            }
            best
        }
        let mut rng = rng(7);
        // Lengths around the lane width and a vocabulary-sized row; few distinct
        // values so that ties across lanes and the tail are common.
        for len in [0, 1, 5, 15, 16, 17, 31, 32, 33, 100, 49_152] {
            for round in 0..20 {
                let row: Vec<f32> = (0..len)
                    .map(|_| match rng.next_u64() % 9 {
                        0 => f32::NAN,
                        1 => f32::NEG_INFINITY,
                        n if round % 2 == 0 => n as f32,
                        _ => (rng.next_f64() * 4.0) as f32,
                    })
                    .collect();
                assert_eq!(argmax(&row), reference(&row), "len {len}, round {round}");
            }
        }
        assert_eq!(argmax(&[f32::NEG_INFINITY; 40]), 0);
        assert_eq!(argmax(&[f32::NAN; 40]), 0);
    }

    #[test]
    fn greedy_with_bias_or_penalties_still_adjusts() {
        let mut p = params(0.0, 1.0);
        p.logit_bias = vec![(0, 5.0)];
        assert_eq!(Sampler::new(p, rng(1)).sample(&[1.0, 2.0]), 0);
        let mut p = params(0.0, 1.0);
        p.presence_penalty = 2.0;
        let mut s = Sampler::new(p, rng(1));
        assert_eq!(s.sample(&[1.0, 2.0]), 1);
        s.record(1);
        assert_eq!(s.sample(&[1.0, 2.0]), 0, "the penalty applies once the token was generated");
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed, choice| {
            let mut s = Sampler::new(params(1.0, 1.0), Rng::for_choice(seed, choice));
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(42, 0), run(42, 0));
        assert_ne!(run(42, 0), run(43, 0), "different seeds differ");
        assert_ne!(run(42, 0), run(42, 1), "different choices differ");
        let distinct: std::collections::HashSet<_> = run(42, 0).into_iter().collect();
        assert!(distinct.len() > 3, "temperature 1 explores: {distinct:?}");
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let logits = [0.5, 1.0, 3.0, 2.9, -2.0];
        for seed in 0..100 {
            let mut s = Sampler::new(params(1.5, 1e-6), rng(seed));
            assert_eq!(s.sample(&logits), 2);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ~ [0.49, 0.49, 0.02]: top_p 0.9 keeps ids 0 and 1.
        let logits = [3.2, 3.2, 0.0];
        let mut s = Sampler::new(params(1.0, 0.9), rng(7));
        let picks: Vec<u32> = (0..500).map(|_| s.sample(&logits)).collect();
        assert!(picks.iter().all(|&t| t < 2));
        assert!(picks.contains(&0) && picks.contains(&1));
    }

    #[test]
    fn large_flat_vocabulary_nucleus_spans_beyond_the_sorted_head() {
        // 5000 equal tokens: top_p 0.5 needs 2500 of them, past the head.
        let logits = vec![0.0f32; 5000];
        let mut s = Sampler::new(params(1.0, 0.5), rng(11));
        let picks: Vec<u32> = (0..2000).map(|_| s.sample(&logits)).collect();
        assert!(picks.iter().all(|&t| t < 2501), "ties rank by id");
        assert!(picks.iter().any(|&t| t > 1500));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = [0.25, 0.75] at temperature 1.
        let logits = [0.0, 3f32.ln()];
        let mut s = Sampler::new(params(1.0, 1.0), rng(99));
        let ones = (0..20_000).filter(|_| s.sample(&logits) == 1).count();
        let p = ones as f64 / 20_000.0;
        assert!((p - 0.75).abs() < 0.02, "p = {p}");
    }

    #[test]
    fn penalties_follow_openai_formula() {
        let p = SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.25, ..params(1.0, 1.0) };
        let counts = HashMap::from([(1u32, 3u32), (2, 1)]);
        let mut logits = [1.0f32, 1.0, 1.0, 1.0];
        adjust_logits(&mut logits, &p, &counts);
        // mu[j] - c[j] * 0.25 - (c[j] > 0) * 0.5
        assert_eq!(logits, [1.0, 1.0 - 0.75 - 0.5, 1.0 - 0.25 - 0.5, 1.0]);

        // Negative penalties encourage repetition.
        let p = SamplingParams { presence_penalty: -1.0, ..params(0.0, 1.0) };
        let mut s = Sampler::new(p, rng(0));
        assert_eq!(s.sample(&[1.0, 0.5]), 0);
        s.record(1);
        assert_eq!(s.sample(&[1.0, 0.5]), 1);
    }

    #[test]
    fn frequency_penalty_discourages_repeats_while_generating() {
        let p = SamplingParams { frequency_penalty: 2.0, ..params(0.0, 1.0) };
        let mut s = Sampler::new(p, rng(0));
        let logits = [3.0, 2.5, 0.0];
        let first = s.sample(&logits);
        s.record(first);
        assert_eq!((first, s.sample(&logits)), (0, 1));
    }

    #[test]
    fn logit_bias_minus_100_bans_a_token() {
        let p = SamplingParams { logit_bias: vec![(0, -100.0)], ..params(1.0, 1.0) };
        let mut s = Sampler::new(p.clone(), rng(3));
        // Token 0 dominates without the bias.
        let logits = [50.0, 0.0, 0.0];
        assert!((0..1000).all(|_| s.sample(&logits) != 0));
        let mut greedy = Sampler::new(SamplingParams { temperature: 0.0, ..p }, rng(3));
        assert_eq!(greedy.sample(&logits), 1);
        // A positive bias makes a token win.
        let p = SamplingParams { logit_bias: vec![(2, 100.0)], ..params(0.0, 1.0) };
        assert_eq!(Sampler::new(p, rng(0)).sample(&logits), 2);
    }

    #[test]
    fn degenerate_logits_do_not_panic() {
        let mut r = rng(5);
        let mut all_banned = [f32::NEG_INFINITY; 3];
        assert_eq!(sample_adjusted(&mut all_banned, 1.0, 0.5, &mut r), 0);
        let mut infinite = [0.0, f32::INFINITY, 1.0];
        assert_eq!(sample_adjusted(&mut infinite, 1.0, 0.5, &mut r), 1);
        let mut nans = [f32::NAN, 2.0, f32::NAN];
        assert_eq!(sample_adjusted(&mut nans, 0.7, 0.9, &mut r), 1);
        let mut empty: [f32; 0] = [];
        assert_eq!(sample_adjusted(&mut empty, 1.0, 1.0, &mut r), 0);
    }

    #[test]
    fn log_softmax_helpers() {
        let logits = [1.0f32, 2.0, 3.0, 3.0];
        let lse = log_sum_exp(&logits);
        let total: f32 = logits.iter().map(|x| (x - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(top_k(&logits, 3), vec![(2, 3.0), (3, 3.0), (1, 2.0)]);
        assert_eq!(top_k(&logits, 0), vec![]);
        assert_eq!(top_k(&logits, 10).len(), 4);
    }
}
