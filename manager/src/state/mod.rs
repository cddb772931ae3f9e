//! The replicated state: the object store (what a committed entry does to it), its
//! invariants, and the Raft log and state machine that carry it to every manager. This
//! layer imports only proto and the pure IPAM arithmetic, so what a log entry does
//! depends on the entry and the state alone, never on the planners above.

pub mod invariants;
pub mod raft;
pub mod store;
