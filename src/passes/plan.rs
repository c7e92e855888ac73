//! Buffer planning: every node that owns a buffer gets a slot; intermediate
//! slots are reused once their last reader has run, so a deep network needs
//! a few activation buffers' worth of memory per live range, not one per node.

use super::fusion::{Fusion, Placement};
use crate::codegen::Launch;
use crate::ir::{Graph, NodeId};
use crate::tensor::DType;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub bytes: usize,
    /// Leaves and outputs keep their slot for the whole run.
    pub pinned: bool,
}

#[derive(Clone, Debug, Default)]
pub struct BufferPlan {
    pub slots: Vec<Slot>,
    /// The slot of every node that owns a buffer (aliases map to their owner's slot).
    pub slot_of: HashMap<NodeId, usize>,
}

impl BufferPlan {
    pub fn new(graph: &Graph, fusion: &Fusion, launches: &[Launch], outputs: &[NodeId]) -> BufferPlan {
        let mut plan = BufferPlan::default();
        let bytes = |id: NodeId| {
            let ty = graph.ty(id);
            let n: usize = ty.dims().map(|d| d.iter().product()).unwrap_or(0);
            n.max(1) * if ty.dtype == DType::I64 { 8 } else { 4 }
        };
        let pinned: HashSet<NodeId> = outputs.iter().filter_map(|&o| fusion.buffer_of(o)).collect();
        for id in graph.ids() {
            if *fusion.placement(id) == Placement::Leaf {
                plan.pin(id, bytes(id));
            }
        }
        for &o in &pinned {
            if !plan.slot_of.contains_key(&o) {
                plan.pin(o, bytes(o));
            }
        }
        // The last launch that reads each buffer.
        let mut last_read: HashMap<NodeId, usize> = HashMap::new();
        for (i, l) in launches.iter().enumerate() {
            for &b in &l.buffers[1..] {
                last_read.insert(b, i);
            }
        }
        let mut free: Vec<usize> = Vec::new();
        for (i, l) in launches.iter().enumerate() {
            let out = l.buffers[0];
            if !plan.slot_of.contains_key(&out) {
                let need = bytes(out);
                let slot = match free.iter().position(|&s| plan.slots[s].bytes == need) {
                    Some(p) => free.swap_remove(p),
                    None => {
                        plan.slots.push(Slot {
                            bytes: need,
                            pinned: false,
                        });
                        plan.slots.len() - 1
                    }
                };
                plan.slot_of.insert(out, slot);
            }
            for &b in &l.buffers[1..] {
                let slot = plan.slot_of[&b];
                if last_read.get(&b) == Some(&i) && !plan.slots[slot].pinned && !free.contains(&slot) {
                    free.push(slot);
                }
            }
            // A result nobody reads frees its slot at once.
            if !last_read.contains_key(&out) && !plan.slots[plan.slot_of[&out]].pinned {
                free.push(plan.slot_of[&out]);
            }
        }
        for id in graph.ids() {
            if let Placement::Alias(owner) = fusion.placement(id) {
                if let Some(&s) = plan.slot_of.get(owner) {
                    plan.slot_of.insert(id, s);
                }
            }
        }
        plan
    }

    fn pin(&mut self, id: NodeId, bytes: usize) {
        self.slots.push(Slot { bytes, pinned: true });
        self.slot_of.insert(id, self.slots.len() - 1);
    }

    /// Bytes of all slots together.
    pub fn total_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.bytes).sum()
    }
}
