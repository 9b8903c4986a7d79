//! The prefix cache: finished sequences' KV caches, kept for prompts that start the same.
//!
//! A finished sequence's cache is kept (least recently used first out) with the tokens it
//! holds, in a buffer of exactly its positions, within a budget of the bytes those buffers
//! really hold. A new sequence whose prompt starts with the same tokens — the next turn of a
//! conversation, a shared system prompt, a retried request — copies those positions and
//! computes only the rest. A position's keys and values depend only on the tokens up to it,
//! so the copied ones are exactly what recomputing would give (the rest is computed in a
//! shorter run, which may round differently in the last bits, as any change of batch shape
//! may). Entries are reused only within the scope (tenant) that made them, so one tenant
//! cannot time another's prompts.
//!
//! An entry is a group of the scheduler's [`KvGroups`] with no live row, owned here.

use std::time::Instant;

use super::graph::{DecoderGraph, KvCache};
use super::groups::{Group, Home, KvGroups, Part};
use crate::inference::NnError;

/// Shortest shared prefix worth a copy instead of recomputing it.
const MIN_PREFIX: usize = 4;

/// The cache of a finished sequence, alone in its group, kept for prompts that start
/// with its tokens.
struct Retired {
    scope: u64,
    tokens: Vec<i64>,
    group: u64,
    last_used: u64,
    /// The group's KV buffers.
    bytes: usize,
}

pub(super) struct PrefixCache {
    entries: Vec<Retired>,
    /// In bytes of KV buffers (0: off).
    budget: usize,
    /// Bytes of the entries' KV buffers (the sum of theirs).
    bytes: usize,
    /// A clock for least-recently-used eviction.
    uses: u64,
}

impl PrefixCache {
    pub(super) fn new(budget: usize) -> Self {
        Self { entries: Vec::new(), budget, bytes: 0, uses: 0 }
    }

    /// Bytes the entries' KV buffers hold.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A closed sequence's cache (`tokens`, at `home`) becomes an entry in a buffer of
    /// exactly its positions (copied out of its group unless it is alone in one of that
    /// size), or is freed when it is too short to matter or larger than the whole budget.
    /// Older entries make room, least recently used first: the bytes held never exceed the
    /// budget.
    pub(super) fn keep(&mut self, groups: &mut KvGroups, graph: &DecoderGraph, scope: u64, tokens: Vec<i64>, home: Home) {
        let len = tokens.len();
        let bytes = graph.cache_bytes(1, len);
        if len < MIN_PREFIX || bytes > self.budget {
            groups.leave(Some(home));
            return;
        }
        // An entry that holds these tokens and more serves every prompt this one would...
        let same_scope = |r: &Retired| r.scope == scope;
        if let Some(i) = self.entries.iter().position(|r| same_scope(r) && r.tokens.starts_with(&tokens)) {
            self.uses += 1;
            self.entries[i].last_used = self.uses;
            groups.leave(Some(home));
            return;
        }
        // ...and this one replaces the entries whose tokens it starts with.
        let mut i = 0;
        while i < self.entries.len() {
            if same_scope(&self.entries[i]) && tokens.starts_with(&self.entries[i].tokens) {
                self.evict(groups, i);
            } else {
                i += 1;
            }
        }
        while self.bytes + bytes > self.budget {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, r)| r.last_used).map(|(i, _)| i) else { break };
            self.evict(groups, oldest);
        }
        let exact = groups.get(home.group).is_some_and(|g| g.rows.len() == 1 && g.kv.cap == len);
        let group = if exact {
            // The group stays, owned by the prefix cache instead of the sequence.
            home.group
        } else {
            // Trimmed: a graph that updates its cache in place allocates 256 positions at a
            // time, and a group's buffer has every member's rows.
            let started = Instant::now();
            let kv = match groups.gather(graph, &[Some(Part { home, len, take: len })], len, len) {
                Ok(kv) => {
                    tracing::debug!(positions = len, us = started.elapsed().as_micros() as u64, "prefix cache: entry trimmed");
                    kv
                }
                Err(e) => {
                    tracing::debug!("prefix cache: not kept: {}", e.message);
                    groups.leave(Some(home));
                    return;
                }
            };
            groups.leave(Some(home));
            groups.insert(Group { kv, rows: vec![None] })
        };
        if let Some(g) = groups.get_mut(group) {
            g.rows = vec![None];
        }
        self.uses += 1;
        self.bytes += bytes;
        self.entries.push(Retired { scope, tokens, group, last_used: self.uses, bytes });
    }

    /// Drops entry `index` and frees its buffers.
    fn evict(&mut self, groups: &mut KvGroups, index: usize) {
        let gone = self.entries.swap_remove(index);
        self.bytes -= gone.bytes;
        groups.remove(gone.group);
    }

    /// A new cache holding the longest cached prefix of `ids` among `scope`'s entries, and
    /// how many tokens it holds, leaving at least one token to compute (its logits are the
    /// answer); `None` when no entry shares enough.
    pub(super) fn reuse(
        &mut self,
        groups: &KvGroups,
        graph: &DecoderGraph,
        scope: u64,
        ids: &[i64],
    ) -> Result<Option<(KvCache, usize)>, NnError> {
        if ids.len() <= MIN_PREFIX {
            return Ok(None);
        }
        let common = |r: &Retired| r.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scope == scope)
            .map(|(i, r)| (i, common(r).min(ids.len() - 1)))
            .max_by_key(|&(_, n)| n);
        let Some((index, take)) = best.filter(|&(_, n)| n >= MIN_PREFIX) else { return Ok(None) };
        let entry = &self.entries[index];
        let part = Part { home: Home { group: entry.group, row: 0 }, len: entry.tokens.len(), take };
        let kv = groups.gather(graph, &[Some(part)], take, graph.capacity(take))?;
        self.uses += 1;
        self.entries[index].last_used = self.uses;
        Ok(Some((kv, take)))
    }
}
