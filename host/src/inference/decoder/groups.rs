//! KV groups: where the scheduler keeps its sequences' caches.
//!
//! A group is the batched cache of the sequences that last ran together, left-padded to a
//! common width (`attention_mask` 0 over the padding, which the graph turns into an
//! attention bias; each row's `position_ids` are its own positions). While the same
//! members keep stepping together, their cache carries over from run to run with no copy
//! (in place, or `present.*` as the next past: [`KvCache`]), exactly as for a lone
//! sequence, which is a group of one. When the set stepping together changes (a sequence
//! joins after its prefill, another finishes), the scheduler gathers the members' rows into
//! a new group, trimmed to the longest member: one copy per change of membership, not one
//! per step.

use std::collections::HashMap;

use super::graph::{DecoderGraph, KvCache};
use crate::inference::NnError;

/// Where a sequence's cache is: `rows[row]` of group `group`.
#[derive(Clone, Copy)]
pub(super) struct Home {
    pub group: u64,
    pub row: usize,
}

/// A batched KV cache and the sequence in each of its rows (`None`: left, or retired).
pub(super) struct Group {
    pub kv: KvCache,
    pub rows: Vec<Option<u64>>,
}

impl Group {
    fn live(&self) -> impl Iterator<Item = u64> + '_ {
        self.rows.iter().flatten().copied()
    }
}

/// What [`KvGroups::gather`] copies from one row: the first `take` of the `len` positions a
/// sequence holds at `home`.
#[derive(Clone, Copy)]
pub(super) struct Part {
    pub home: Home,
    pub len: usize,
    pub take: usize,
}

/// Every group of one decoder, by id.
pub(super) struct KvGroups {
    groups: HashMap<u64, Group>,
    next: u64,
}

impl KvGroups {
    pub(super) fn new() -> Self {
        Self { groups: HashMap::new(), next: 1 }
    }

    pub(super) fn get(&self, id: u64) -> Option<&Group> {
        self.groups.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Group> {
        self.groups.get_mut(&id)
    }

    /// Frees group `id`'s buffers.
    pub(super) fn remove(&mut self, id: u64) {
        self.groups.remove(&id);
    }

    /// Keeps `group` under a new id.
    pub(super) fn insert(&mut self, group: Group) -> u64 {
        let id = self.next;
        self.next += 1;
        self.groups.insert(id, group);
        id
    }

    /// Bytes of every group's KV buffers, as allocated.
    pub(super) fn bytes(&self, graph: &DecoderGraph) -> usize {
        self.groups.values().map(|g| graph.cache_bytes(g.kv.rows, g.kv.cap)).sum()
    }

    /// A sequence left `home` (closed, or moved to another group): frees the group once
    /// nobody is left in it.
    pub(super) fn leave(&mut self, home: Option<Home>) {
        let Some(home) = home else { return };
        let Some(group) = self.groups.get_mut(&home.group) else { return };
        if let Some(slot) = group.rows.get_mut(home.row) {
            *slot = None;
        }
        if group.live().next().is_none() {
            self.groups.remove(&home.group);
        }
    }

    /// Copies each part's first `take` positions into a new cache `width` wide with room
    /// for `cap` positions, each row right-aligned (left padding before it).
    pub(super) fn gather(
        &self,
        graph: &DecoderGraph,
        parts: &[Option<Part>],
        width: usize,
        cap: usize,
    ) -> Result<KvCache, NnError> {
        let [_, heads, _, dim] = graph.kv_shape(1, 0);
        let cap = cap.max(width);
        let mut buffers = Vec::with_capacity(graph.kv_tensors());
        for k in 0..graph.kv_tensors() {
            let mut buf = vec![0f32; graph.kv_shape(parts.len(), cap).iter().product()];
            for (i, part) in parts.iter().enumerate() {
                let Some(Part { home, len, take }) = *part else { continue };
                let group = self.groups.get(&home.group).ok_or_else(|| NnError::internal("cache group missing"))?;
                let value = group.kv.values.get(k).ok_or_else(|| NnError::internal("cache tensor missing"))?;
                let (_, data) = value.try_extract_tensor::<f32>().map_err(NnError::runtime)?;
                let pad = group.kv.width.checked_sub(len).ok_or_else(|| NnError::internal("cache row longer than its group"))?;
                for h in 0..heads {
                    let src = ((home.row * heads + h) * group.kv.cap + pad) * dim;
                    let dst = ((i * heads + h) * cap + (width - take)) * dim;
                    let from = data
                        .get(src..src + take * dim)
                        .ok_or_else(|| NnError::internal("cache tensor smaller than its group"))?;
                    buf[dst..dst + take * dim].copy_from_slice(from);
                }
            }
            buffers.push(buf);
        }
        graph.cache_from(parts.len(), width, cap, buffers)
    }
}
