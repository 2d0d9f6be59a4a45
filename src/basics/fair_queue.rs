//! Work served fairly across namespaces (the objects due now, the writes waiting for the API
//! write budget): each namespace has its own first-come, first-served line, and the namespaces
//! with something waiting take turns, one item each. A namespace with 10,000 items waiting
//! delays another's next item by one turn, not by 10,000; one alone gets every turn (nothing
//! waits for an idle namespace). The anchor is the API server's own API Priority and Fairness,
//! with namespaces as its flows.
//!
//! Within a namespace's line, items pushed as *due* ([`FairQueue::push_due`]: a renewal whose
//! planned time came) go before the others (a new object, a change): an object with a token
//! that is about to need renewing loses more by waiting than one that has no token yet, which
//! has nothing that expires. Without it, renewals that come due during a fill of thousands of new
//! objects wait for the whole fill (docs/performance, "How it grows").

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

pub struct FairQueue<T> {
    lines: HashMap<Arc<str>, Line<T>>,
    /// The namespaces with a non-empty line, in the order of their next turn.
    turns: VecDeque<Arc<str>>,
}

/// One namespace's line: what is due first, then the rest, each first come, first served.
struct Line<T> {
    due: VecDeque<T>,
    rest: VecDeque<T>,
}

impl<T> Default for Line<T> {
    fn default() -> Self {
        Self { due: VecDeque::new(), rest: VecDeque::new() }
    }
}

impl<T> Line<T> {
    fn is_empty(&self) -> bool {
        self.due.is_empty() && self.rest.is_empty()
    }
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { lines: HashMap::new(), turns: VecDeque::new() }
    }
}

impl<T> FairQueue<T> {
    /// Puts `id` at the end of its namespace's line.
    pub fn push(&mut self, namespace: &Arc<str>, id: T) {
        self.line(namespace).rest.push_back(id);
    }

    /// Puts `id` behind what is already due in its namespace, ahead of everything else.
    pub fn push_due(&mut self, namespace: &Arc<str>, id: T) {
        self.line(namespace).due.push_back(id);
    }

    fn line(&mut self, namespace: &Arc<str>) -> &mut Line<T> {
        let line = self.lines.entry(namespace.clone()).or_default();
        if line.is_empty() {
            self.turns.push_back(namespace.clone());
        }
        line
    }

    /// The first object of the namespace whose turn it is (what is due first); that namespace's
    /// next turn comes after every other namespace with something waiting.
    pub fn pop(&mut self) -> Option<T> {
        let namespace = self.turns.pop_front()?;
        let line = self.lines.get_mut(&namespace)?;
        let id = line.due.pop_front().or_else(|| line.rest.pop_front());
        if line.is_empty() {
            // An empty line is dropped: a namespace costs nothing while it has nothing due.
            self.lines.remove(&namespace);
        } else {
            self.turns.push_back(namespace);
        }
        id
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basics::object_id::ObjectId;

    fn id(n: u128) -> ObjectId {
        ObjectId::of(&format!("{n:032x}"))
    }

    fn ns(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn a_crowded_namespace_delays_another_by_one_turn() {
        let (noisy, quiet) = (ns("noisy"), ns("quiet"));
        let mut queue = FairQueue::default();
        for n in 0..10_000 {
            queue.push(&noisy, id(n));
        }
        queue.push(&quiet, id(1_000_000));
        assert_eq!(queue.pop(), Some(id(0)));
        assert_eq!(queue.pop(), Some(id(1_000_000)), "the quiet namespace's object is next, not 10,000th");
        assert_eq!(queue.pop(), Some(id(1)));
    }

    #[test]
    fn what_is_due_goes_first_within_its_namespace_and_turns_stay_fair() {
        let (busy, other) = (ns("busy"), ns("other"));
        let mut queue = FairQueue::default();
        for n in 0..1000 {
            queue.push(&busy, id(n)); // a fill of new objects
        }
        queue.push(&other, id(5000));
        queue.push_due(&busy, id(2000)); // renewals come due meanwhile
        queue.push_due(&busy, id(2001));
        let served: Vec<ObjectId> = std::iter::from_fn(|| queue.pop()).take(5).collect();
        assert_eq!(served, [id(2000), id(5000), id(2001), id(0), id(1)]);
    }

    #[test]
    fn one_namespace_alone_gets_every_turn_in_first_come_first_served_order() {
        let mut queue = FairQueue::default();
        let only = ns("only");
        for n in 0..100 {
            queue.push(&only, id(n));
        }
        let served: Vec<ObjectId> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(served, (0..100).map(id).collect::<Vec<_>>());
        assert!(queue.is_empty() && queue.lines.is_empty() && queue.turns.is_empty(), "nothing kept once empty");
    }

    proptest::proptest! {
        /// Any pushes and pops: each object comes out once, in its namespace's order, and
        /// between two turns of one namespace every other namespace with something due gets at
        /// most one (no starvation, whatever one namespace pushes).
        #[test]
        fn turns_are_fair_and_lines_first_come_first_served(
            steps in proptest::collection::vec((0u8..4, proptest::prelude::any::<bool>()), 0..400),
        ) {
            let names: Vec<Arc<str>> = (0..4).map(|n| ns(&format!("ns-{n}"))).collect();
            let mut queue = FairQueue::default();
            let mut pushed: Vec<Vec<ObjectId>> = vec![Vec::new(); 4];
            let mut popped: Vec<Vec<ObjectId>> = vec![Vec::new(); 4];
            let mut next = 0u128;
            // Since each namespace's last turn: the turns other namespaces had.
            let mut others_since: Vec<HashMap<usize, u32>> = vec![HashMap::new(); 4];
            for (namespace, push) in steps {
                let namespace = usize::from(namespace);
                if push {
                    queue.push(&names[namespace], id(next));
                    pushed[namespace].push(id(next));
                    next += 1;
                } else if let Some(out) = queue.pop() {
                    let owner = pushed.iter().position(|line| line.contains(&out)).unwrap();
                    popped[owner].push(out);
                    others_since[owner].clear();
                    for (waiting, counts) in others_since.iter_mut().enumerate() {
                        let still_due = pushed[waiting].len() > popped[waiting].len();
                        if waiting != owner && still_due {
                            let turns = counts.entry(owner).or_default();
                            *turns += 1;
                            proptest::prop_assert!(*turns <= 1, "ns-{owner} had two turns while ns-{waiting} waited");
                        }
                    }
                }
            }
            while let Some(out) = queue.pop() {
                let owner = pushed.iter().position(|line| line.contains(&out)).unwrap();
                popped[owner].push(out);
            }
            proptest::prop_assert_eq!(popped, pushed);
        }
    }
}
