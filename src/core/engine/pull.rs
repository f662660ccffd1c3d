//! Pulling the server's changes: records with no pending write take the server's state; records
//! with pending writes are rebased (3-way merge, the pending write re-made against the server's
//! version); tombstones delete. A page is stored in transactions of `TX_CHUNK` records, its cursor
//! with the last: a page cut short (a closed tab) comes again, and taking a record again is a no-op.
//!
//! Also the integrity repairs that take records from the server: a write whose accepted answer
//! carries a checksum that does not match (`fetch_mismatched`), and a stored record that fails its
//! checksum (`repair`).

use serde::Serialize;

use super::conflict::ServerSide;
use super::{change_event, intact, newest_copy, Applied, Engine, Event, TX_CHUNK};
use crate::core::checksum::checksum;
use crate::core::error::{Result, SyncError};
use crate::core::op::{Entity, EntityKey, OpKind, Operation, SyncStatus};
use crate::core::traits::{Clock, Failure, Outcome, PushResponse, ServerRecord, Store, Transport, Tx, Write};
use crate::core::value::Value;

/// What one `pull()` did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    /// Records the server sent.
    pub received: usize,
    /// Records that took the server's state.
    pub applied: usize,
    /// Records with pending writes merged with the server's state.
    pub rebased: usize,
    pub deleted: usize,
    /// Records left alone: a write of ours is in flight, or a conflict waits for the app.
    pub skipped: usize,
}

/// The meta record holding a collection's pull cursor.
pub fn cursor_meta(collection: &str) -> String {
    format!("cursor:{collection}")
}

/// At most this many pages per pull, so a server that always says `hasMore` cannot hold us.
const MAX_PAGES: usize = 1_000;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Pulls `collection`'s changes from the server (all declared collections with `None`).
    pub async fn pull(&self, collection: Option<&str>) -> Result<PullReport> {
        self.check_open()?;
        let names: Vec<String> = match collection {
            Some(c) if self.config.collections.contains_key(c) => vec![c.to_string()],
            Some(c) => return Err(SyncError::InvalidInput(format!("unknown collection '{c}'"))),
            None => self.config.collections.keys().cloned().collect(),
        };
        let mut report = PullReport::default();
        // Damaged records not repaired yet are tried again first: those a read left for the
        // server's copy, those whose fetch failed, those whose pending writes had to be answered
        // first (a record in a conflict waits for the app's resolution).
        let damaged = std::mem::take(&mut self.state.borrow_mut().corrupt);
        if !damaged.is_empty() {
            self.repair(damaged.into_iter().collect(), false).await;
        }
        let mut result = Ok(());
        for name in names {
            result = self.pull_collection(&name, &mut report).await;
            if result.is_err() {
                break;
            }
        }
        // The rebases' resolutions are stored even when a later page failed.
        self.save_audit().await;
        result.map(|()| report)
    }

    async fn pull_collection(&self, collection: &str, report: &mut PullReport) -> Result<()> {
        let meta = cursor_meta(collection);
        for _ in 0..MAX_PAGES {
            let cursor = self.store.get_meta(&meta).await?.and_then(|v| v.as_str().map(str::to_string));
            let page = self.transport.pull(collection, cursor.as_deref()).await.map_err(|f| f.error)?;
            report.received += page.items.len();
            let mut items = page.items;
            if page.cursor.is_none() {
                // A full listing: our synced records missing from it were deleted on the server.
                let listed: crate::core::sorted::VecSet<&str> = items.iter().map(|r| r.id.as_str()).collect();
                let gone: Vec<ServerRecord> = self
                    .store
                    .list_entities(collection)
                    .await?
                    .into_iter()
                    .filter(|e| e.sync_status == SyncStatus::Synced && !listed.contains(e.id.as_str()))
                    .map(|e| ServerRecord { id: e.id, version: None, data: None, modified_ms: None })
                    .collect();
                items.extend(gone);
            }
            let held = self.store_page(collection, &items, page.cursor.as_ref(), report).await?;
            if held || !page.has_more || page.cursor.is_none() || page.cursor == cursor {
                return Ok(());
            }
        }
        self.emit(Event::Error {
            code: "PROTOCOL".into(),
            message: format!("pull of '{collection}' stopped after {MAX_PAGES} pages"),
            status: None,
        });
        Ok(())
    }

    /// Stores a pulled page in parts of `TX_CHUNK` records, its cursor with the last part unless a
    /// record was held back. Returns whether one was (see `apply_remote`).
    async fn store_page(
        &self,
        collection: &str,
        items: &[ServerRecord],
        cursor: Option<&String>,
        report: &mut PullReport,
    ) -> Result<bool> {
        let now = self.clock.now_ms();
        let mut held = false;
        let mut parts = items.chunks(TX_CHUNK).peekable();
        // An empty page still stores its cursor.
        let mut part: &[ServerRecord] = parts.next().unwrap_or_default();
        loop {
            let last = parts.peek().is_none();
            let keys: Vec<EntityKey> = part.iter().map(|r| EntityKey::new(collection, r.id.clone())).collect();
            let earlier = held;
            let (out, h) = self
                .transact(&keys, |tx| {
                    let mut out = Applied::at(now);
                    let mut held = false;
                    for (key, item) in keys.iter().zip(part) {
                        held |= self.apply_remote(tx, key, item, report, &mut out)?;
                    }
                    // A change held back for a write in flight must come again: the cursor stays
                    // where it was until that write is answered (the answer may be older than it).
                    if let (Some(c), false, true) = (cursor, earlier || held, last) {
                        tx.write(Write::PutMeta(cursor_meta(collection), Value::String(c.clone())));
                    }
                    Ok((out, held))
                })
                .await?;
            held |= h;
            self.absorb(out);
            self.hand_over();
            let Some(next) = parts.next() else { return Ok(held) };
            part = next;
        }
    }

    /// Takes one pulled record. `Ok(true)`: it was held back because a write of ours to it is in
    /// flight, and the pull must bring it again (see `pull_collection`).
    fn apply_remote(
        &self,
        tx: &mut Tx,
        key: &EntityKey,
        item: &ServerRecord,
        report: &mut PullReport,
        out: &mut Applied,
    ) -> Result<bool> {
        let entity = tx.entity(key).cloned();
        if let (Some(e), Some(v)) = (&entity, item.version) {
            if e.version.is_some_and(|ours| ours >= v) && e.sync_status != SyncStatus::Conflict {
                return Ok(false); // we have this version (or a newer one) already
            }
        }
        let lane = tx.lane(key).to_vec();
        if entity.as_ref().is_some_and(|e| e.sync_status == SyncStatus::Conflict) {
            // A conflict waits for the app: its resolution is sent against the server's version.
            report.skipped += 1;
            return Ok(false);
        }
        if lane.first().is_some_and(|o| o.sent) {
            // Our write is in flight: its answer comes first, and this change after it.
            report.skipped += 1;
            return Ok(true);
        }
        if let Some(head) = lane.first() {
            report.rebased += 1;
            return self
                .on_conflict(
                    tx,
                    head,
                    ServerSide { version: item.version, data: item.data.clone(), modified_ms: item.modified_ms },
                    None,
                    out,
                )
                .map(|()| false);
        }
        take_server_state(tx, key, entity.as_ref(), item, report, out);
        Ok(false)
    }
}

/// A pulled record for a record with nothing of ours pending: the server's state is ours.
fn take_server_state(
    tx: &mut Tx,
    key: &EntityKey,
    entity: Option<&Entity>,
    item: &ServerRecord,
    report: &mut PullReport,
    out: &mut Applied,
) {
    let Some(data) = &item.data else {
        if entity.is_some() {
            tx.write(Write::DeleteEntity(key.clone()));
            out.events.push(change_event(key, None));
            report.deleted += 1;
        }
        return;
    };
    let e = Entity::from_server(key, data.clone(), item.version, item.modified_ms.unwrap_or(out.now));
    // Unchanged (the time of a synced copy aside): nothing to write.
    if entity.is_some_and(|old| old.sync_status == SyncStatus::Synced && old.data == e.data && old.version == e.version)
    {
        return;
    }
    out.events.push(change_event(key, Some(&e)));
    tx.write(Write::PutEntity(e));
    report.applied += 1;
}

/// What a fetch after a checksum mismatch found, per op id: the server's live record (`None`: it
/// has none), or why it could not be fetched.
pub(super) type Fetched = Vec<(String, std::result::Result<Option<ServerRecord>, Failure>)>;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Accepted results whose server checksum does not match the record the server says it holds
    /// (the record it echoed, or without one what we sent): each is reported as `INTEGRITY`, and the
    /// server's record is fetched (one request per collection) to be taken as authoritative.
    ///
    /// An echoed record that matches the echoed checksum needs no fetch even when it differs from
    /// what we sent: the server normalised it, and it is taken as the server's record anyway.
    pub(super) async fn fetch_mismatched(&self, batch: &[Operation], response: &PushResponse) -> Fetched {
        let mut suspect: Vec<&Operation> = Vec::new();
        for r in &response.results {
            let Outcome::Accepted { data, checksum: Some(theirs), .. } = &r.outcome else { continue };
            let Some(op) = batch.iter().find(|o| o.id == r.op_id && o.kind != OpKind::Delete) else { continue };
            let ours = data.as_ref().map_or_else(|| op.checksum.clone(), checksum);
            if theirs.eq_ignore_ascii_case(&ours) {
                continue;
            }
            let what = if data.is_some() { "the record it returned" } else { "the record we sent" };
            self.report(&SyncError::Integrity(format!(
                "the server's checksum of {}/{} ({theirs}) does not match {what} ({ours}): its record is fetched",
                op.collection, op.entity_id
            )));
            suspect.push(op);
        }
        let mut out = Fetched::new();
        while let Some(first) = suspect.first() {
            // One request per collection.
            let collection = first.collection.clone();
            let (ops, rest): (Vec<&Operation>, Vec<&Operation>) =
                suspect.into_iter().partition(|o| o.collection == collection);
            suspect = rest;
            let ids: Vec<String> = ops.iter().map(|o| o.entity_id.clone()).collect();
            let answer = self.transport.fetch(&collection, &ids).await;
            for op in ops {
                let found = match &answer {
                    Ok(records) => Ok(records.iter().find(|r| r.id == op.entity_id && r.data.is_some()).cloned()),
                    Err(f) => Err(Failure {
                        error: SyncError::Integrity(format!(
                            "the server applied the write to {collection}/{}, but its record could not be fetched \
                             to check it: {}",
                            op.entity_id, f.error
                        )),
                        retry_after_ms: f.retry_after_ms,
                    }),
                };
                out.push((op.id.clone(), found));
            }
        }
        out
    }

    /// Restores records whose stored copy failed its checksum (never used meanwhile: reads fail
    /// with `INTEGRITY` and patches are refused).
    ///
    /// - With pending writes: the newest one's own copy (checked by its own checksum) becomes the
    ///   record again. That is what the user expects to see: their last write, which is still on
    ///   its way to the server and must not be lost nor replaced by the server's older state; its
    ///   answer (or its merge with the server's state) settles the record as usual.
    /// - With pending writes but no good copy in them either: nothing trustworthy is left here; the
    ///   record waits for their answers (the server checks each op's checksum) and is repaired
    ///   afterwards. A record waiting for the app to resolve a conflict waits for that.
    /// - Without: the server's record is fetched (one request per collection) and replaces it, or the
    ///   record is deleted if the server has none.
    ///
    /// What cannot be repaired now is tried again at the next `pull()`. Failures are reported as
    /// events, not returned: a repair runs on behalf of a read that fails with `INTEGRITY` anyway.
    ///
    /// A read calls it `local`ly: only pending writes' copies are used, with no network I/O; the
    /// rest waits for the next pull.
    pub(super) async fn repair(&self, keys: Vec<EntityKey>, local: bool) {
        let mut waiting = Vec::new();
        if let Err(e) = self.try_repair(keys.clone(), local, &mut waiting).await {
            self.report(&e);
            // A store failure: nothing is known to be repaired.
            waiting.clone_from(&keys);
        }
        let mut st = self.state.borrow_mut();
        for k in &keys {
            st.corrupt.remove(k);
        }
        st.corrupt.extend(waiting);
    }

    /// A read met a damaged record only the server's copy can restore: `true` once, so the bindings
    /// start one sync round (its pull fetches the copy) rather than one per call.
    pub fn take_repair_request(&self) -> bool {
        std::mem::take(&mut self.state.borrow_mut().repair_requested)
    }

    /// `repair`; adds to `waiting` what is still damaged and must be tried again later.
    async fn try_repair(&self, keys: Vec<EntityKey>, local: bool, waiting: &mut Vec<EntityKey>) -> Result<()> {
        // A first pass without the server's records, then one per collection with them.
        let mut passes: Vec<(Vec<EntityKey>, Option<Vec<ServerRecord>>)> = vec![(keys, None)];
        while let Some((keys, records)) = passes.pop() {
            let now = self.clock.now_ms();
            let (mut need_server, events, wait) =
                self.transact(&keys, |tx| Ok(repair_pass(tx, &keys, records.as_deref(), now))).await?;
            waiting.extend(wait);
            self.deliver(events);
            if local {
                self.state.borrow_mut().repair_requested |= !need_server.is_empty();
                waiting.append(&mut need_server);
            }
            while let Some(first) = need_server.first() {
                let collection = first.collection.clone();
                let (keys, rest): (Vec<EntityKey>, Vec<EntityKey>) =
                    need_server.into_iter().partition(|k| k.collection == collection);
                need_server = rest;
                let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
                match self.transport.fetch(&collection, &ids).await {
                    Ok(records) => passes.push((keys, Some(records))),
                    Err(f) => {
                        self.report(&SyncError::Integrity(format!(
                            "the server's copy of {} damaged record(s) of '{collection}' could not be fetched ({}); \
                             the next pull tries again",
                            ids.len(),
                            f.error
                        )));
                        waiting.extend(keys);
                    }
                }
            }
        }
        Ok(())
    }
}

/// One repair pass over `keys` inside a store transaction (see `Engine::repair`): a damaged record
/// with pending writes takes the newest one's copy; one without takes the server's record from
/// `records`, or before the fetch (`None`) is returned as needing it. Returns the records needing
/// the server, the events, and the records that must wait.
fn repair_pass(
    tx: &mut Tx,
    keys: &[EntityKey],
    records: Option<&[ServerRecord]>,
    now: u64,
) -> (Vec<EntityKey>, Vec<Event>, Vec<EntityKey>) {
    let (mut need_server, mut events, mut wait) = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        // Nothing to do if a write or a pull replaced it meanwhile.
        let Some(mut e) = tx.entity(key).cloned().filter(|e| !intact(e)) else { continue };
        let lane = tx.lane(key);
        let restored = match records {
            _ if e.sync_status == SyncStatus::Conflict => None,
            _ if !lane.is_empty() => newest_copy(lane).map(|copy| {
                e.checksum = copy.as_ref().map(checksum);
                e.data = copy;
                Some(e)
            }),
            None => {
                need_server.push(key.clone());
                continue;
            }
            Some(records) => Some(records.iter().find(|r| r.id == key.id).and_then(|r| {
                Some(Entity::from_server(key, r.data.clone()?, r.version, r.modified_ms.unwrap_or(now)))
            })),
        };
        match restored {
            None => wait.push(key.clone()),
            Some(e) => {
                events.push(change_event(key, e.as_ref()));
                tx.write(match e {
                    Some(e) => Write::PutEntity(e),
                    // The server has no such record.
                    None => Write::DeleteEntity(key.clone()),
                });
            }
        }
    }
    (need_server, events, wait)
}
