//! Deadlock detection between call chains.
//!
//! A *call chain* is one client request (or alarm) and the stub calls it
//! makes: it holds the slot of every object on it and waits for at most one
//! more. A stub call from `A` to `B` while another chain holds `B` and waits,
//! directly or through others, for `A` would wait forever (or until the
//! deadline). The graph here records which chain holds which object and
//! which object each chain waits for; before a chain starts waiting, the
//! walk from the object it wants along "held by" and "waits for" edges
//! tells whether it would come back to itself, and such a wait is refused
//! at once.
//!
//! Registration races are harmless: a chain registers its hold right after
//! it gets a slot and before it can wait for anything else, so of two
//! chains that close a cycle, the later to wait always sees the whole cycle.

use std::{collections::HashMap, sync::Mutex};

use crate::id::ObjectId;

/// Which chain holds which object, and what each chain waits for.
#[derive(Default)]
pub(super) struct WaitGraph {
    inner: Mutex<Edges>,
}

#[derive(Default)]
struct Edges {
    held_by: HashMap<ObjectId, u64>,
    waits_for: HashMap<u64, ObjectId>,
}

impl WaitGraph {
    /// Records that `chain` is about to wait for `target`, unless that wait
    /// would close a cycle; then returns the objects around the cycle,
    /// starting with `target`.
    pub(super) fn start_waiting(&self, chain: u64, target: &ObjectId) -> Result<(), Vec<ObjectId>> {
        let mut edges = self.edges();
        let mut path = vec![target.clone()];
        let mut object = target;
        while let Some(&holder) = edges.held_by.get(object) {
            if holder == chain {
                return Err(path);
            }
            let Some(next) = edges.waits_for.get(&holder) else {
                break;
            };
            if path.len() > edges.waits_for.len() + 1 {
                break;
            }
            path.push(next.clone());
            object = next;
        }
        edges.waits_for.insert(chain, target.clone());
        Ok(())
    }

    /// `chain` got the slot of `id`: it holds it and waits no more.
    pub(super) fn acquired(&self, chain: u64, id: &ObjectId) {
        let mut edges = self.edges();
        edges.waits_for.remove(&chain);
        edges.held_by.insert(id.clone(), chain);
    }

    /// `chain` stopped waiting without getting the slot.
    pub(super) fn gave_up(&self, chain: u64) {
        self.edges().waits_for.remove(&chain);
    }

    /// The slot of `id` was released.
    pub(super) fn released(&self, id: &ObjectId) {
        self.edges().held_by.remove(id);
    }

    fn edges(&self) -> std::sync::MutexGuard<'_, Edges> {
        self.inner.lock().expect("wait graph lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ObjectId::new("NS", name).unwrap()
    }

    #[test]
    fn refuses_the_wait_that_closes_a_cycle() {
        let graph = WaitGraph::default();
        graph.acquired(1, &id("a"));
        graph.acquired(2, &id("b"));
        assert_eq!(
            graph.start_waiting(1, &id("b")),
            Ok(()),
            "1 waits for b, held by 2"
        );
        assert_eq!(
            graph.start_waiting(2, &id("a")),
            Err(vec![id("a"), id("b")])
        );

        graph.gave_up(1);
        assert_eq!(
            graph.start_waiting(2, &id("a")),
            Ok(()),
            "1 no longer waits"
        );
        graph.released(&id("a"));
        graph.acquired(2, &id("a"));
        assert_eq!(
            graph.start_waiting(3, &id("a")),
            Ok(()),
            "a free chain may wait"
        );
    }

    #[test]
    fn follows_longer_cycles() {
        let graph = WaitGraph::default();
        for (chain, name) in [(1, "a"), (2, "b"), (3, "c")] {
            graph.acquired(chain, &id(name));
        }
        graph.start_waiting(1, &id("b")).unwrap();
        graph.start_waiting(2, &id("c")).unwrap();
        assert_eq!(
            graph.start_waiting(3, &id("a")),
            Err(vec![id("a"), id("b"), id("c")])
        );
    }
}
