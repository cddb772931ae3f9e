//! The cluster's object store: the state machine Raft replicates. Objects carry a version
//! (the Raft index of their last write); updates name the version they were read at, so two
//! writers never silently overwrite each other. A proposal's actions apply all or none, and
//! every applied change is published to watchers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use shoal_proto::stored_object::Object;
use shoal_proto::{
    Cluster, Meta, Node, Proposal, ProposalResult, Refusal, Service, StoreAction, StoreActionKind,
    StoredObject, Task, Version,
};
use tokio::sync::broadcast;

/// Whether a refusal means the proposal was built from a view of the state that has
/// since moved on (a concurrent write, or an address the allocator handed out
/// meanwhile, a subnet or VNI another network took): building it again from the current
/// state may succeed, or say plainly why it cannot.
pub fn built_on_stale_state(refusal: Refusal) -> bool {
    matches!(
        refusal,
        Refusal::OutOfSequence | Refusal::AddressHeld | Refusal::NetworkClash
    )
}

/// A refused action: the kind, and the words a user reads.
type Refused = (Refusal, String);

/// Kinds of object, in the order snapshots list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
}

/// Uniform access to the fields every object has.
pub trait ObjectExt {
    fn kind(&self) -> Kind;
    fn id(&self) -> &str;
    fn meta_mut(&mut self) -> &mut Meta;
    fn version(&self) -> u64;
}

macro_rules! object_access {
    ($($variant:ident),*) => {
        impl ObjectExt for Object {
            fn kind(&self) -> Kind {
                match self { $(Object::$variant(_) => Kind::$variant),* }
            }
            fn id(&self) -> &str {
                match self { $(Object::$variant(o) => &o.id),* }
            }
            fn meta_mut(&mut self) -> &mut Meta {
                match self { $(Object::$variant(o) => o.meta.get_or_insert_with(Default::default)),* }
            }
            fn version(&self) -> u64 {
                match self {
                    $(Object::$variant(o) => o.meta.as_ref().and_then(|m| m.version).map(|v| v.index).unwrap_or(0)),*
                }
            }
        }
    };
}
object_access!(Cluster, Node, Service, Task, Network, Secret, Config);

/// A change applied to the store.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: StoreActionKind,
    pub object: Object,
}

/// All objects, by kind and ID.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub objects: BTreeMap<Kind, BTreeMap<String, Object>>,
}

impl State {
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Object> {
        self.objects.get(&kind).and_then(|m| m.get(id))
    }

    pub fn list(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values())
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.list(Kind::Node).filter_map(|o| match o {
            Object::Node(n) => Some(n),
            _ => None,
        })
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        match self.get(Kind::Node, id) {
            Some(Object::Node(n)) => Some(n),
            _ => None,
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.list(Kind::Service).filter_map(|o| match o {
            Object::Service(x) => Some(x),
            _ => None,
        })
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        match self.get(Kind::Service, id) {
            Some(Object::Service(x)) => Some(x),
            _ => None,
        }
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.list(Kind::Task).filter_map(|o| match o {
            Object::Task(x) => Some(x),
            _ => None,
        })
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        match self.get(Kind::Task, id) {
            Some(Object::Task(x)) => Some(x),
            _ => None,
        }
    }

    pub fn networks(&self) -> impl Iterator<Item = &shoal_proto::Network> {
        self.list(Kind::Network).filter_map(|o| match o {
            Object::Network(x) => Some(x),
            _ => None,
        })
    }

    pub fn secrets(&self) -> impl Iterator<Item = &shoal_proto::Secret> {
        self.list(Kind::Secret).filter_map(|o| match o {
            Object::Secret(x) => Some(x),
            _ => None,
        })
    }

    pub fn configs(&self) -> impl Iterator<Item = &shoal_proto::Config> {
        self.list(Kind::Config).filter_map(|o| match o {
            Object::Config(x) => Some(x),
            _ => None,
        })
    }

    /// The managers' control addresses, for agents to reach them.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.nodes()
            .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
            .collect()
    }

    /// The one cluster object, once the swarm is initialised.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.list(Kind::Cluster).find_map(|o| match o {
            Object::Cluster(c) => Some(c),
            _ => None,
        })
    }

    /// Applies a proposal at Raft `index`. On any refused action nothing changes and the
    /// result carries the reason.
    pub fn apply(&mut self, index: u64, proposal: &Proposal) -> (ProposalResult, Vec<Event>) {
        let mut staged: BTreeMap<(Kind, String), Option<Object>> = BTreeMap::new();
        let mut events = Vec::new();
        let mut stored = Vec::new();
        for action in &proposal.actions {
            match self.stage(index, action, &staged) {
                Ok((key, value, event)) => {
                    if let Some(obj) = &value {
                        stored.push(StoredObject {
                            object: Some(obj.clone()),
                        });
                    }
                    staged.insert(key, value);
                    events.push(event);
                }
                Err((refusal, error)) => {
                    return (
                        ProposalResult {
                            objects: vec![],
                            error,
                            refusal: refusal as i32,
                        },
                        vec![],
                    );
                }
            }
        }
        for ((kind, id), value) in staged {
            let table = self.objects.entry(kind).or_default();
            match value {
                Some(obj) => {
                    table.insert(id, obj);
                }
                None => {
                    table.remove(&id);
                }
            }
        }
        (
            ProposalResult {
                objects: stored,
                error: String::new(),
                refusal: Refusal::None as i32,
            },
            events,
        )
    }

    #[allow(clippy::type_complexity)]
    fn stage(
        &self,
        index: u64,
        action: &StoreAction,
        staged: &BTreeMap<(Kind, String), Option<Object>>,
    ) -> Result<((Kind, String), Option<Object>, Event), Refused> {
        let mut obj = action
            .object
            .as_ref()
            .and_then(|o| o.object.clone())
            .ok_or((
                Refusal::Malformed,
                "store action without an object".to_string(),
            ))?;
        let (kind, id) = (obj.kind(), obj.id().to_string());
        if id.is_empty() {
            return Err((Refusal::Malformed, format!("{kind:?} without an ID")));
        }
        let key = (kind, id.clone());
        let current = match staged.get(&key) {
            Some(v) => v.as_ref(),
            None => self.get(kind, &id),
        };
        let action_kind = action.kind();
        super::invariants::check(self, action_kind, &obj, staged)?;
        match (action_kind, current) {
            (StoreActionKind::Create, Some(_)) => {
                return Err((
                    Refusal::AlreadyExists,
                    format!("{kind:?} {id} already exists"),
                ));
            }
            (StoreActionKind::Update | StoreActionKind::Remove, None) => {
                return Err((Refusal::NotFound, format!("{kind:?} {id} not found")));
            }
            (StoreActionKind::Update, Some(cur)) if cur.version() != obj.version() => {
                return Err((
                    Refusal::OutOfSequence,
                    format!(
                        "update out of sequence: {kind:?} {id} is at version {}, the update was made against version {}; read it again and retry",
                        cur.version(),
                        obj.version()
                    ),
                ));
            }
            _ => {}
        }
        let value = if action_kind == StoreActionKind::Remove {
            let removed = current.cloned().expect("checked above");
            return Ok((
                key,
                None,
                Event {
                    action: action_kind,
                    object: removed,
                },
            ));
        } else {
            obj.meta_mut().version = Some(Version { index });
            obj
        };
        Ok((
            key,
            Some(value.clone()),
            Event {
                action: action_kind,
                object: value,
            },
        ))
    }
}

/// The live store: state plus watchers. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    state: Arc<RwLock<State>>,
    events: broadcast::Sender<Event>,
    results: Arc<Mutex<RecentResults>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            state: Arc::default(),
            events: broadcast::channel(1024).0,
            results: Arc::default(),
        }
    }
}

/// The results of the last proposals applied, by proposal ID. A proposal applied again
/// (a retry after its leader died unanswered, though it had committed) changes nothing
/// anyway (its creates exist, its versions moved on): what this adds is the answer the
/// first application gave, so the writer is told it succeeded. Kept in memory only: it
/// changes no state, so replicas may hold different windows of it.
#[derive(Default)]
struct RecentResults {
    order: std::collections::VecDeque<String>,
    by_id: std::collections::HashMap<String, ProposalResult>,
}

const RECENT_RESULTS: usize = 4096;

impl RecentResults {
    fn record(&mut self, id: &str, result: &ProposalResult) {
        if self.by_id.insert(id.to_string(), result.clone()).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > RECENT_RESULTS {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

impl Store {
    /// Reads the current state.
    pub fn view<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().expect("store lock poisoned"))
    }

    /// Receives every change applied from now on.
    pub fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn apply(&self, index: u64, proposal: &Proposal) -> (ProposalResult, Vec<Event>) {
        let mut results = self.results.lock().expect("poisoned");
        if let Some(first) = results.by_id.get(&proposal.id) {
            return (first.clone(), vec![]);
        }
        let (result, events) = self
            .state
            .write()
            .expect("store lock poisoned")
            .apply(index, proposal);
        if !proposal.id.is_empty() {
            results.record(&proposal.id, &result);
        }
        for e in &events {
            let _ = self.events.send(e.clone());
        }
        (result, events)
    }

    pub(crate) fn replace(&self, state: State) {
        *self.state.write().expect("store lock poisoned") = state;
    }

    pub(crate) fn snapshot(&self) -> State {
        self.view(Clone::clone)
    }
}

/// Builders for proposals.
pub fn action(kind: StoreActionKind, object: Object) -> StoreAction {
    StoreAction {
        kind: kind as i32,
        object: Some(StoredObject {
            object: Some(object),
        }),
    }
}

pub fn proposal(actions: Vec<StoreAction>) -> Proposal {
    Proposal {
        actions,
        id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, version: u64) -> Object {
        Object::Node(Node {
            id: id.into(),
            meta: Some(Meta {
                version: Some(Version { index: version }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn create_sets_version_and_update_needs_it() {
        let mut s = State::default();
        let (r, ev) = s.apply(
            5,
            &proposal(vec![action(StoreActionKind::Create, node("a", 0))]),
        );
        assert!(r.error.is_empty());
        assert_eq!(ev.len(), 1);
        assert_eq!(s.get(Kind::Node, "a").unwrap().version(), 5);

        let (r, _) = s.apply(
            6,
            &proposal(vec![action(StoreActionKind::Update, node("a", 4))]),
        );
        assert!(r.error.contains("out of sequence"), "{}", r.error);
        assert_eq!(r.refusal(), Refusal::OutOfSequence);
        assert!(built_on_stale_state(r.refusal()));
        assert_eq!(s.get(Kind::Node, "a").unwrap().version(), 5);

        let (r, _) = s.apply(
            7,
            &proposal(vec![action(StoreActionKind::Update, node("a", 5))]),
        );
        assert!(r.error.is_empty());
        assert_eq!(s.get(Kind::Node, "a").unwrap().version(), 7);
    }

    #[test]
    fn a_refused_action_leaves_the_whole_batch_unapplied() {
        let mut s = State::default();
        s.apply(
            1,
            &proposal(vec![action(StoreActionKind::Create, node("a", 0))]),
        );
        let before = s.clone();
        let (r, ev) = s.apply(
            2,
            &proposal(vec![
                action(StoreActionKind::Create, node("b", 0)),
                action(StoreActionKind::Create, node("a", 0)),
            ]),
        );
        assert!(r.error.contains("already exists"));
        assert_eq!(r.refusal(), Refusal::AlreadyExists);
        assert!(!built_on_stale_state(r.refusal()));
        assert!(ev.is_empty());
        assert_eq!(s, before);
    }

    #[test]
    fn a_proposal_applied_again_answers_with_its_first_result_and_changes_nothing() {
        let store = Store::default();
        let mut create = proposal(vec![action(StoreActionKind::Create, node("a", 0))]);
        create.id = "p1".into();
        let (first, events) = store.apply(3, &create);
        assert!(first.error.is_empty() && events.len() == 1);
        // The same write retried after its leader died unanswered, committed at 4.
        let (again, events) = store.apply(4, &create);
        assert_eq!(again, first, "the retry is told the write succeeded");
        assert!(events.is_empty());
        assert_eq!(store.view(|s| s.get(Kind::Node, "a").unwrap().version()), 3);
        // Without an ID, the repeat is refused as the duplicate it is.
        let mut anonymous = create.clone();
        anonymous.id.clear();
        let (r, _) = store.apply(5, &anonymous);
        assert_eq!(r.refusal(), Refusal::AlreadyExists);
    }

    #[test]
    fn remove_deletes_and_reports_the_object() {
        let mut s = State::default();
        s.apply(
            1,
            &proposal(vec![action(StoreActionKind::Create, node("a", 0))]),
        );
        let (r, ev) = s.apply(
            2,
            &proposal(vec![action(StoreActionKind::Remove, node("a", 0))]),
        );
        assert!(r.error.is_empty());
        assert_eq!(ev[0].object.id(), "a");
        assert!(s.get(Kind::Node, "a").is_none());
        let (r, _) = s.apply(
            3,
            &proposal(vec![action(StoreActionKind::Remove, node("a", 0))]),
        );
        assert!(r.error.contains("not found"));
    }

    #[tokio::test]
    async fn watchers_see_applied_changes() {
        let store = Store::default();
        let mut rx = store.watch();
        store.apply(
            1,
            &proposal(vec![action(StoreActionKind::Create, node("a", 0))]),
        );
        let ev = rx.recv().await.unwrap();
        assert_eq!(ev.action, StoreActionKind::Create);
        assert_eq!(ev.object.id(), "a");
    }
}
