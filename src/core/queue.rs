//! The pending-op queue: local writes with coalescing, and picking the ready lane heads.
//!
//! The queue lives in the store (it must survive reloads and be shared by tabs); these are the
//! pure rules applied inside a store transaction.

use super::checksum::checksum;
use super::error::{Result, SyncError};
use super::op::{Entity, EntityKey, OpKind, Operation, Priority, SyncStatus};
use super::sorted::{union, union_owned, VecSet};
use super::traits::{Tx, Write};
use super::value::{Map, Value};

/// What the app asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// Replace the record (create it if absent).
    Put(Value),
    /// Merge these fields into the record (JSON merge patch: `null` removes a field).
    Patch(Value),
    Delete,
}

/// What a local write did.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteEffect {
    /// The entity after the write; `None` if it is gone.
    pub entity: Option<Entity>,
    /// Whether anything was written (a put of identical data to a synced record is not).
    pub changed: bool,
}

/// Applies `m` to `key` inside `tx`: updates the entity and appends an op, coalescing with the
/// lane's last op when that op has never been sent.
pub fn local_write(
    tx: &mut Tx,
    key: &EntityKey,
    m: Mutation,
    now: u64,
    new_op_id: &mut dyn FnMut() -> String,
    priority: Priority,
) -> Result<WriteEffect> {
    let existing = tx.entity(key).cloned();
    let live = existing.as_ref().filter(|e| !e.is_deleted());
    let unchanged = || Ok(WriteEffect { entity: existing.clone(), changed: false });
    let Some(data) = mutated(key, live, m)? else { return unchanged() };
    let lane: Vec<Operation> = tx.lane(key).to_vec();
    if lane.is_empty() && data.is_some() && live.is_some_and(|e| e.sync_status == SyncStatus::Synced && e.data == data)
    {
        return unchanged();
    }
    // Whether the server holds the record once the lane's first `n` ops are applied.
    let on_server = |n: usize| match n.checked_sub(1) {
        Some(last) => lane[last].kind != OpKind::Delete,
        None => existing.as_ref().is_some_and(|e| e.base.is_some()),
    };
    let change = Change {
        kind: OpKind::taking(data.is_some(), on_server(lane.len())),
        // A create queued after a delete (or after a dead-lettered delete) re-creates a record the
        // server may still have.
        on_server_before_last: on_server(lane.len().saturating_sub(1)),
        data,
        before: live.and_then(|e| e.data.clone()),
        version: existing.as_ref().and_then(|e| e.version),
        priority,
        now,
    };
    let pending = queue_change(tx, key, &lane, &change, new_op_id);
    // A record created and deleted locally, never seen by the server, leaves nothing behind.
    if change.data.is_none() && !pending && existing.as_ref().is_none_or(|e| e.base.is_none()) {
        tx.write(Write::DeleteEntity(key.clone()));
        return Ok(WriteEffect { entity: None, changed: true });
    }
    let entity = Entity {
        checksum: change.data.as_ref().map(checksum),
        data: change.data,
        base: existing.and_then(|e| e.base),
        version: change.version,
        sync_status: if pending { SyncStatus::Pending } else { SyncStatus::Synced },
        ..Entity::empty(key, now)
    };
    tx.write(Write::PutEntity(entity.clone()));
    Ok(WriteEffect { entity: Some(entity), changed: true })
}

/// A local write as the queue sees it.
struct Change {
    kind: OpKind,
    /// The server holds the record before the lane's last op.
    on_server_before_last: bool,
    /// The record after the write (`None`: deleted).
    data: Option<Value>,
    /// The record before it.
    before: Option<Value>,
    version: Option<u64>,
    priority: Priority,
    now: u64,
}

/// The record's data after `m` (`None` inside: deleted), or `None` when `m` changes nothing (the
/// delete of an absent record).
fn mutated(key: &EntityKey, live: Option<&Entity>, m: Mutation) -> Result<Option<Option<Value>>> {
    match m {
        Mutation::Put(v) => {
            require_object(&v)?;
            Ok(Some(Some(v)))
        }
        Mutation::Patch(p) => {
            require_object(&p)?;
            let Some(current) = live.and_then(|e| e.data.clone()) else {
                return Err(SyncError::NotFound(format!("{}/{}", key.collection, key.id)));
            };
            Ok(Some(Some(merge_patch(current, p))))
        }
        Mutation::Delete => Ok(live.map(|_| None)),
    }
}

/// Queues `change` in `key`'s lane: the lane's last op, if never sent, takes the new state
/// (keeping its id and place), else a new op is appended. Returns whether the lane still holds an
/// op afterwards.
fn queue_change(
    tx: &mut Tx,
    key: &EntityKey,
    lane: &[Operation],
    change: &Change,
    new_op_id: &mut dyn FnMut() -> String,
) -> bool {
    let Some(mut prev) = lane.last().filter(|o| !o.sent).cloned() else {
        let seq = tx.take_seq();
        let (data, before) = (change.data.clone(), change.before.as_ref());
        let op = new_op(new_op_id(), seq, key, change.kind, data, before, change.version, change.priority, change.now);
        tx.write(Write::PutOp(op));
        return true;
    };
    let kind = match (prev.kind, change.kind) {
        // Created and deleted before the server heard of it: nothing to send, unless the create
        // re-created a record the server still holds; then that record must go.
        (OpKind::Create, OpKind::Delete) if change.on_server_before_last => OpKind::Delete,
        (OpKind::Create, OpKind::Delete) => {
            tx.write(Write::DeleteOp(prev.id.clone()));
            return lane.len() > 1;
        }
        (OpKind::Create, _) => OpKind::Create,
        (OpKind::Update, k) => k,
        // A delete not yet sent followed by a re-create: the server still has the record.
        (OpKind::Delete, _) => OpKind::Update,
    };
    prev.patch = match (prev.kind, kind, &prev.patch, &change.before, &change.data) {
        (OpKind::Update, OpKind::Update, Some(earlier), Some(before), Some(after)) => {
            compose_patch(earlier, &diff_patch(before, after))
        }
        _ => None,
    };
    prev.kind = kind;
    prev.payload = change.data.clone();
    prev.checksum = checksum(prev.payload.as_ref().unwrap_or(&Value::Null));
    prev.priority = prev.priority.min(change.priority);
    prev.next_attempt_at = prev.next_attempt_at.min(change.now);
    tx.write(Write::PutOp(prev));
    true
}

fn require_object(v: &Value) -> Result<()> {
    if v.is_object() {
        Ok(())
    } else {
        Err(SyncError::InvalidInput("a record must be a plain object".into()))
    }
}

/// A fresh, unsent op taking the record from `before` (the state the server holds when the op
/// applies) to `payload`: its checksum, and for an update the merge patch of the change.
#[allow(clippy::too_many_arguments)]
pub fn new_op(
    id: String,
    seq: u64,
    key: &EntityKey,
    kind: OpKind,
    payload: Option<Value>,
    before: Option<&Value>,
    base_version: Option<u64>,
    priority: Priority,
    now: u64,
) -> Operation {
    let patch = match (kind, before, &payload) {
        (OpKind::Update, Some(before), Some(after)) => Some(diff_patch(before, after)),
        _ => None,
    };
    Operation {
        id,
        seq,
        collection: key.collection.clone(),
        entity_id: key.id.clone(),
        kind,
        checksum: checksum(payload.as_ref().unwrap_or(&Value::Null)),
        payload,
        base_version,
        priority,
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        last_status: None,
        sent: false,
        patch,
    }
}

/// The JSON merge patch (RFC 7386) that turns `before` into `after`: changed fields, `null` for
/// removed ones, recursing into objects present on both sides.
pub fn diff_patch(before: &Value, after: &Value) -> Value {
    let (Value::Object(b), Value::Object(a)) = (before, after) else { return after.clone() };
    let mut patch = Map::new();
    for (k, bv, av) in union(b, a) {
        let v = match (bv, av) {
            (Some(bv), Some(av)) if bv == av => continue,
            (Some(bv @ Value::Object(_)), Some(av @ Value::Object(_))) => diff_patch(bv, av),
            (_, Some(av)) => av.clone(),
            (Some(_), None) => Value::Null,
            (None, None) => continue,
        };
        patch.insert(k.clone(), v);
    }
    Value::Object(patch)
}

/// One merge patch with the effect of `first` then `second`, or `None` where merge patch cannot
/// say it (a field removed or set to a non-object, then set to an object: applied at once it would
/// merge into the old value instead of replacing it). `None` makes the op send the whole record instead.
pub fn compose_patch(first: &Value, second: &Value) -> Option<Value> {
    let (Value::Object(f), Value::Object(s)) = (first, second) else { return Some(second.clone()) };
    let mut out = Map::new();
    for (k, fv, sv) in union(f, s) {
        let v = match (fv, sv) {
            (Some(fv @ Value::Object(_)), Some(sv @ Value::Object(_))) => compose_patch(fv, sv)?,
            // Set to something else (or removed), then to an object: applied at once, the object
            // would merge into the server's old value instead of replacing it.
            (Some(fv), Some(Value::Object(_))) if !fv.is_object() => return None,
            (_, Some(sv)) => sv.clone(),
            (Some(fv), None) => fv.clone(),
            (None, None) => continue,
        };
        out.insert(k.clone(), v);
    }
    Some(Value::Object(out))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: Value, patch: Value) -> Value {
    match patch {
        Value::Object(p) => {
            let t = match target {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let mut out = Map::new();
            for (k, old, v) in union_owned(t, p) {
                match (old, v) {
                    // `null` removes the field.
                    (_, Some(Value::Null)) | (None, None) => {}
                    (old, Some(v)) => {
                        out.insert(k, merge_patch(old.unwrap_or_default(), v));
                    }
                    (Some(old), None) => {
                        out.insert(k, old);
                    }
                }
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// The ops to send next: the head (lowest `seq`) of each entity's lane, if it is due and its lane
/// is not paused, ordered by priority then `seq`, at most `limit`.
pub fn ready_heads<'a>(ops: &'a [Operation], paused: &VecSet<EntityKey>, now: u64, limit: usize) -> Vec<&'a Operation> {
    let mut heads = lane_heads(ops);
    heads.retain(|o| o.next_attempt_at <= now && !is_paused(o, paused));
    heads.sort_unstable_by_key(|o| (o.priority, o.seq));
    heads.truncate(limit);
    heads
}

/// The earliest time a lane head becomes due (ignoring paused lanes), if any op is pending.
pub fn next_due(ops: &[Operation], paused: &VecSet<EntityKey>) -> Option<u64> {
    lane_heads(ops).into_iter().filter(|o| !is_paused(o, paused)).map(|o| o.next_attempt_at).min()
}

/// Collection, entity id, sequence.
fn place(o: &Operation) -> (&str, &str, u64) {
    (&o.collection, &o.entity_id, o.seq)
}

fn is_paused(o: &Operation, paused: &VecSet<EntityKey>) -> bool {
    !paused.is_empty() && paused.contains(&EntityKey::new(o.collection.as_str(), o.entity_id.as_str()))
}

fn lane_heads(ops: &[Operation]) -> Vec<&Operation> {
    // Sorted by lane, then `seq`: each lane's head is its first op. (A sort rather than a hash map:
    // no hashing code in the wasm, and no allocation per op.)
    let mut heads: Vec<&Operation> = ops.iter().collect();
    heads.sort_unstable_by(|a, b| place(a).cmp(&place(b)));
    heads.dedup_by(|later, head| later.collection == head.collection && later.entity_id == head.entity_id);
    heads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn key() -> EntityKey {
        EntityKey::new("notes", "n1")
    }

    struct Ids(u32);
    impl Ids {
        fn next(&mut self) -> String {
            self.0 += 1;
            format!("op{}", self.0)
        }
    }

    /// Runs a write against `tx` and applies its writes back into a fresh snapshot, as a store would.
    fn write(tx: &mut Tx, m: Mutation, ids: &mut Ids) -> Result<WriteEffect> {
        let id = ids.next();
        local_write(tx, &key(), m, 100, &mut || id.clone(), Priority::Medium)
    }

    fn synced_tx(data: Value) -> Tx {
        let entity = Entity {
            collection: "notes".into(),
            id: "n1".into(),
            checksum: Some(checksum(&data)),
            base: Some(data.clone()),
            data: Some(data),
            version: Some(3),
            last_modified: 1,
            sync_status: SyncStatus::Synced,
        };
        let mut tx = Tx::new(1);
        tx.add(key(), Some(entity), Vec::new());
        tx
    }

    #[test]
    fn a_field_set_to_a_scalar_then_to_an_object_cannot_be_one_patch() {
        // On a server holding {"a": {"y": 2}}, {"a": 5} then {"a": {"x": 1}} leaves {"a": {"x": 1}};
        // the one patch {"a": {"x": 1}} would leave {"a": {"x": 1, "y": 2}}.
        assert_eq!(compose_patch(&json!({"a": 5}), &json!({"a": {"x": 1}})), None);
        assert_eq!(compose_patch(&json!({"a": null}), &json!({"a": {"x": 1}})), None);
        let server = json!({"a": {"y": 2}, "b": 1});
        let (p1, p2) = (json!({"a": {"y": null, "z": 3}}), json!({"a": {"x": 1}, "b": null}));
        let both = compose_patch(&p1, &p2).unwrap();
        assert_eq!(both, json!({"a": {"x": 1, "y": null, "z": 3}, "b": null}));
        assert_eq!(merge_patch(server.clone(), both), merge_patch(merge_patch(server, p1), p2));
    }

    #[test]
    fn patches_of_large_objects_with_interleaved_keys() {
        // Every second key of `before` goes, a key between each pair comes: every insert of a
        // key-by-key merge would land in the middle of the map.
        let n = 20_000;
        let obj = |keys: &mut dyn Iterator<Item = usize>| -> Value {
            Value::Object(keys.map(|i| (format!("k{i:06}"), Value::from(i))).collect())
        };
        let before = obj(&mut (0..n).step_by(2));
        let after = obj(&mut (0..n).step_by(2).step_by(2).chain((1..n).step_by(2)));
        let patch = diff_patch(&before, &after);
        assert_eq!(patch.as_object().unwrap().len(), n / 4 + n / 2, "the removed keys as null, the new ones");
        assert_eq!(merge_patch(before.clone(), patch.clone()), after);
        let again = diff_patch(&after, &before);
        let both = compose_patch(&patch, &again).unwrap();
        assert_eq!(merge_patch(before.clone(), both), before, "a patch and its inverse composed are no change");
    }

    #[test]
    fn create_then_updates_coalesce_into_one_create() {
        let mut tx = Tx::default();
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Put(json!({"a": 1})), &mut ids).unwrap();
        write(&mut tx, Mutation::Put(json!({"a": 2})), &mut ids).unwrap();
        write(&mut tx, Mutation::Patch(json!({"b": 3})), &mut ids).unwrap();
        let lane = tx.lane(&key());
        assert_eq!(lane.len(), 1);
        assert_eq!(lane[0].id, "op1");
        assert_eq!(lane[0].kind, OpKind::Create);
        assert_eq!(lane[0].payload, Some(json!({"a": 2, "b": 3})));
        assert_eq!(lane[0].checksum, checksum(&json!({"a": 2, "b": 3})));
    }

    #[test]
    fn create_then_delete_leaves_nothing() {
        let mut tx = Tx::default();
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Put(json!({"a": 1})), &mut ids).unwrap();
        let eff = write(&mut tx, Mutation::Delete, &mut ids).unwrap();
        assert_eq!(eff.entity, None);
        assert!(tx.lane(&key()).is_empty());
        assert!(tx.entity(&key()).is_none());
    }

    #[test]
    fn update_then_delete_is_a_delete_with_the_same_id() {
        let mut tx = synced_tx(json!({"a": 1}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Patch(json!({"a": 2})), &mut ids).unwrap();
        write(&mut tx, Mutation::Delete, &mut ids).unwrap();
        let lane = tx.lane(&key());
        assert_eq!(lane.len(), 1);
        assert_eq!((lane[0].id.as_str(), lane[0].kind), ("op1", OpKind::Delete));
        assert_eq!(lane[0].base_version, Some(3));
        let e = tx.entity(&key()).unwrap();
        assert!(e.is_deleted());
        assert_eq!(e.sync_status, SyncStatus::Pending);
    }

    #[test]
    fn a_sent_op_is_never_changed() {
        let mut tx = synced_tx(json!({"a": 1}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Put(json!({"a": 2})), &mut ids).unwrap();
        let mut sent = tx.lane(&key())[0].clone();
        sent.sent = true;
        tx.write(Write::PutOp(sent.clone()));
        write(&mut tx, Mutation::Put(json!({"a": 3})), &mut ids).unwrap();
        write(&mut tx, Mutation::Put(json!({"a": 4})), &mut ids).unwrap();
        let lane = tx.lane(&key());
        assert_eq!(lane.len(), 2);
        assert_eq!(lane[0], sent);
        assert_eq!((lane[1].kind, lane[1].payload.clone()), (OpKind::Update, Some(json!({"a": 4}))));
        assert!(lane[1].seq > lane[0].seq);
    }

    #[test]
    fn recreate_then_delete_of_a_record_the_server_holds_is_a_delete() {
        // The server holds v3. A delete was sent and dead-lettered (it never applied), the app
        // wrote the record again (a create queued against v3), then deleted it: the server's
        // record must still be deleted, not forgotten.
        let mut tx = synced_tx(json!({"a": 1}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Put(json!({"a": 2})), &mut ids).unwrap();
        let mut create = tx.lane(&key())[0].clone();
        create.kind = OpKind::Create;
        tx.write(Write::PutOp(create));
        write(&mut tx, Mutation::Delete, &mut ids).unwrap();
        let lane = tx.lane(&key());
        assert_eq!(lane.len(), 1);
        assert_eq!((lane[0].kind, lane[0].base_version, lane[0].payload.clone()), (OpKind::Delete, Some(3), None));
        assert_eq!(tx.entity(&key()).unwrap().sync_status, SyncStatus::Pending);
    }

    #[test]
    fn unsent_delete_then_put_becomes_an_update() {
        let mut tx = synced_tx(json!({"a": 1}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Delete, &mut ids).unwrap();
        write(&mut tx, Mutation::Put(json!({"a": 9})), &mut ids).unwrap();
        let lane = tx.lane(&key());
        assert_eq!(lane.len(), 1);
        assert_eq!((lane[0].kind, lane[0].payload.clone()), (OpKind::Update, Some(json!({"a": 9}))));
    }

    #[test]
    fn identical_put_on_synced_record_writes_nothing() {
        let mut tx = synced_tx(json!({"a": 1}));
        let eff = write(&mut tx, Mutation::Put(json!({"a": 1})), &mut Ids(0)).unwrap();
        assert!(!eff.changed);
        assert!(tx.writes().is_empty());
    }

    #[test]
    fn invalid_input_is_rejected() {
        let mut tx = Tx::default();
        let mut ids = Ids(0);
        assert_eq!(write(&mut tx, Mutation::Put(json!([1])), &mut ids).unwrap_err().code(), "INVALID_INPUT");
        assert_eq!(write(&mut tx, Mutation::Patch(json!({"a": 1})), &mut ids).unwrap_err().code(), "NOT_FOUND");
        assert!(!write(&mut tx, Mutation::Delete, &mut ids).unwrap().changed);
        assert!(tx.writes().is_empty());
    }

    #[test]
    fn priority_raises_on_coalesce() {
        let mut tx = Tx::default();
        local_write(&mut tx, &key(), Mutation::Put(json!({})), 0, &mut || "a".into(), Priority::Low).unwrap();
        local_write(&mut tx, &key(), Mutation::Put(json!({"x": 1})), 0, &mut || "b".into(), Priority::High).unwrap();
        assert_eq!(tx.lane(&key())[0].priority, Priority::High);
    }

    #[test]
    fn patches_carry_only_the_changes_and_compose_when_coalescing() {
        let mut tx = synced_tx(json!({"a": 1, "b": {"c": 1, "d": 1}, "e": 1}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Patch(json!({"a": 2, "b": {"c": 2}})), &mut ids).unwrap();
        assert_eq!(tx.lane(&key())[0].patch, Some(json!({"a": 2, "b": {"c": 2}})));
        write(&mut tx, Mutation::Put(json!({"a": 2, "b": {"c": 2, "d": 1}})), &mut ids).unwrap();
        let op = &tx.lane(&key())[0];
        assert_eq!(op.patch, Some(json!({"a": 2, "b": {"c": 2}, "e": null})));
        // Applying the patch to the server's state gives the op's payload.
        assert_eq!(
            merge_patch(json!({"a": 1, "b": {"c": 1, "d": 1}, "e": 1}), op.patch.clone().unwrap()),
            op.payload.clone().unwrap()
        );
    }

    #[test]
    fn a_patch_that_merge_patch_cannot_express_falls_back_to_the_whole_record() {
        let mut tx = synced_tx(json!({"o": {"x": 1}}));
        let mut ids = Ids(0);
        write(&mut tx, Mutation::Put(json!({})), &mut ids).unwrap();
        write(&mut tx, Mutation::Put(json!({"o": {"y": 2}})), &mut ids).unwrap();
        let op = &tx.lane(&key())[0];
        assert_eq!((op.patch.clone(), op.payload.clone()), (None, Some(json!({"o": {"y": 2}}))));
    }

    #[test]
    fn diff_then_merge_patch_round_trips() {
        let cases = [
            (json!({"a": 1}), json!({"a": 1})),
            (json!({"a": 1, "b": [1, 2]}), json!({"b": [2], "c": {"d": null}})),
            (json!({"n": {"m": {"k": 1, "j": 2}}}), json!({"n": {"m": {"k": 3}}})),
        ];
        for (a, b) in cases {
            // Explicit nulls in `after` are the one thing merge patch cannot carry: compare without them.
            let expected = merge_patch(json!({}), b.clone());
            assert_eq!(merge_patch(a.clone(), diff_patch(&a, &b)), expected, "{a} -> {b}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        assert_eq!(
            merge_patch(t, json!({"a": null, "b": {"c": 5}, "e": [1]})),
            json!({"b": {"c": 5, "d": 3}, "e": [1]})
        );
    }

    fn op(entity: &str, seq: u64, prio: Priority, due: u64) -> Operation {
        Operation {
            id: format!("{entity}-{seq}"),
            seq,
            collection: "c".into(),
            entity_id: entity.into(),
            kind: OpKind::Update,
            payload: Some(json!({})),
            base_version: None,
            priority: prio,
            created_at: 0,
            attempts: 0,
            next_attempt_at: due,
            last_error: None,
            last_status: None,
            checksum: String::new(),
            sent: false,
            patch: None,
        }
    }

    #[test]
    fn ready_heads_one_per_lane_by_priority_then_seq() {
        let ops = vec![
            op("a", 1, Priority::Low, 0),
            op("a", 2, Priority::High, 0), // not a head: waits behind a#1
            op("b", 3, Priority::Medium, 0),
            op("c", 4, Priority::High, 50), // not due yet
            op("d", 5, Priority::High, 0),
            op("e", 6, Priority::Medium, 0),
        ];
        let ids: Vec<&str> = ready_heads(&ops, &VecSet::new(), 10, 10).iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["d-5", "b-3", "e-6", "a-1"]);
        let paused: VecSet<EntityKey> = [EntityKey::new("c", "b")].into();
        let ids: Vec<&str> = ready_heads(&ops, &paused, 10, 2).iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["d-5", "e-6"]);
        assert_eq!(next_due(&ops, &VecSet::new()), Some(0));
        assert_eq!(next_due(&ops[3..4], &VecSet::new()), Some(50));
        let every_lane_but_c: VecSet<EntityKey> =
            ["a", "b", "d", "e"].map(|id| EntityKey::new("c", id)).into_iter().collect();
        assert_eq!(next_due(&ops, &every_lane_but_c), Some(50));
    }
}
