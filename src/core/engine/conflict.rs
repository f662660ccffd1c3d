//! Conflicts: merging our write with the server's state by the collection's policy (or the app's
//! resolver), queueing what is left to the app, and the app's resolutions.

use super::*;

/// The server's side of a conflict: its version, its record (`None`: deleted, or never created),
/// and when it last changed it (server clock).
pub(super) struct ServerSide {
    pub(super) version: Option<u64>,
    pub(super) data: Option<Value>,
    pub(super) modified_ms: Option<u64>,
}

/// Our side of a conflict, as the store holds it.
struct OurSide {
    /// Our state: the record, or the newest pending write's own copy when the stored one is damaged.
    data: Option<Value>,
    /// What we last knew of the server's state.
    base: Option<Value>,
    /// When we last changed it (device clock).
    modified_ms: u64,
    /// The stored copy fails its checksum and no pending write holds a good one.
    corrupt: bool,
}

impl OurSide {
    fn read(e: Option<&Entity>, lane: &[Operation], now: u64) -> Self {
        // Our side must be what we wrote, never a stored copy that fails its checksum: the newest
        // pending write holds its own copy (under its own checksum); with no good copy at all, the
        // server's state is taken as authoritative and the loss reported.
        let (data, corrupt) = match e {
            Some(e) if !intact(e) => newest_copy(lane).map_or((None, true), |copy| (copy, false)),
            e => (e.and_then(|e| e.data.clone()), false),
        };
        OurSide { data, base: e.and_then(|e| e.base.clone()), modified_ms: e.map_or(now, |e| e.last_modified), corrupt }
    }
}

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// The server refused `op` (and the writes queued after it, folded into our record) because it
    /// holds `server`: the lane's ops are replaced by the merge of both sides, sent again on the
    /// server's version, or by a conflict the app resolves.
    pub(super) fn on_conflict(
        &self,
        tx: &mut Tx,
        op: &Operation,
        server: ServerSide,
        reason: Option<ConflictReason>,
        out: &mut Applied,
    ) -> Result<()> {
        let key = op.key();
        let lane: Vec<Operation> = tx.lane(&key).to_vec();
        let entity = tx.entity(&key).cloned();
        let ours = OurSide::read(entity.as_ref(), &lane, out.now);
        for o in &lane {
            tx.write(Write::DeleteOp(o.id.clone()));
        }
        let priority = lane.iter().map(|o| o.priority).min().unwrap_or(op.priority);
        let mut e = entity.unwrap_or_else(|| Entity::empty(&key, out.now));
        e.base = server.data.clone();
        e.version = server.version.or(e.version);
        if server.data.is_some() && server.data == ours.base && !ours.corrupt {
            // The server still holds what we last saw of it (the record read before a write whose
            // version was unknown): no conflict, our state goes out again on the server's version.
            self.requeue(tx, e, ours.data, priority, out);
            return Ok(());
        }
        out.conflicts += 1;
        let reason = match reason {
            _ if ours.corrupt => ConflictReason::Integrity,
            Some(r) => r,
            None if server.data.is_none() => ConflictReason::Deleted,
            None => ConflictReason::Version,
        };
        let resolution = self.resolution(&key, &ours, &server, out);
        let conflict = Conflict {
            id: format!("{}-{}", op.id, out.now),
            collection: key.collection,
            entity_id: key.id,
            local: ours.data,
            server: server.data,
            base: ours.base,
            server_version: server.version,
            reason,
            detected_at: out.now,
        };
        match resolution {
            Resolution::Manual => hold_for_app(tx, conflict, e, out),
            Resolution::Merged(result) => {
                out.audit.push(AuditEntry::of(conflict, "auto", out.now, result.clone()));
                self.requeue(tx, e, result, priority, out);
            }
        }
        Ok(())
    }

    /// How a conflict resolves: the app's resolver for the collection if it has one, else the
    /// collection's merge policy; a damaged record with no good copy of ours takes the server's state.
    fn resolution(&self, key: &EntityKey, ours: &OurSide, server: &ServerSide, out: &mut Applied) -> Resolution {
        if ours.corrupt {
            out.error(&SyncError::Integrity(format!(
                "{}/{} does not match its checksum and no pending write holds a good copy: the server's state \
                 replaces it",
                key.collection, key.id
            )));
            return Resolution::Merged(server.data.clone());
        }
        // Taken out of the map first: the app's function may set another resolver.
        let custom = self.resolvers.borrow().get(&key.collection).cloned();
        let Some(resolve) = custom else {
            let spec = self.config.collections.get(&key.collection).map(|c| &c.merge);
            let stamps = self.stamps(ours, server);
            let spec = spec.cloned().unwrap_or_default();
            return merge(&spec, ours.base.as_ref(), ours.data.as_ref(), server.data.as_ref(), &stamps);
        };
        match resolve(ours.base.as_ref(), ours.data.as_ref(), server.data.as_ref()) {
            Ok(Some(v)) => Resolution::Merged(Some(v)),
            Ok(None) => Resolution::Manual,
            Err(message) => {
                // A resolver that fails must not lose either side: the conflict waits for the app.
                out.error(&SyncError::Conflict(format!(
                    "the merge function for '{}' failed: {message}",
                    key.collection
                )));
                Resolution::Manual
            }
        }
    }

    /// Both sides' change times on one clock: two device stamps (the records' own `lastModified`, or
    /// our tombstone's write time) as they are; ours against the server's clock skew-corrected.
    fn stamps(&self, ours: &OurSide, server: &ServerSide) -> Stamps {
        let local_raw = record_time(ours.data.as_ref()).unwrap_or(ours.modified_ms);
        match record_time(server.data.as_ref()) {
            Some(server_ms) => Stamps { local_ms: local_raw, server_ms },
            None => {
                let skew = self.state.borrow().skew_ms;
                Stamps { local_ms: (local_raw as i64 + skew).max(0) as u64, server_ms: server.modified_ms.unwrap_or(0) }
            }
        }
    }

    /// Writes `result` as the record's state on top of the server's (already in `e.base`), and
    /// queues what the server needs to reach it, under a fresh op id (the old id's conflict is in
    /// the server's idempotency ledger).
    pub(super) fn requeue(
        &self,
        tx: &mut Tx,
        mut e: Entity,
        result: Option<Value>,
        priority: Priority,
        out: &mut Applied,
    ) {
        let key = e.key();
        let kind = (result != e.base).then(|| OpKind::taking(result.is_some(), e.base.is_some()));
        e.data = result;
        e.checksum = e.data.as_ref().map(checksum);
        match kind {
            None if e.data.is_none() => {
                tx.write(Write::DeleteEntity(key.clone()));
                out.events.push(change_event(&key, None));
                return;
            }
            None => e.sync_status = SyncStatus::Synced,
            Some(kind) => {
                e.sync_status = SyncStatus::Pending;
                let seq = tx.take_seq();
                let op = new_op(
                    uuid(&self.clock),
                    seq,
                    &key,
                    kind,
                    e.data.clone(),
                    e.base.as_ref(),
                    e.version,
                    priority,
                    out.now,
                );
                tx.write(Write::PutOp(op));
            }
        }
        out.events.push(change_event(&key, Some(&e)));
        tx.write(Write::PutEntity(e));
    }

    pub async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.check_open()?;
        self.store.conflicts().await
    }

    /// Resolves a queued conflict with the app's choice and resumes the record's lane.
    pub async fn resolve_conflict(&self, conflict_id: &str, choice: Choice) -> Result<Option<Entity>> {
        self.check_open()?;
        let c = self
            .store
            .conflicts()
            .await?
            .into_iter()
            .find(|c| c.id == conflict_id)
            .ok_or_else(|| SyncError::NotFound(format!("conflict {conflict_id}")))?;
        let result = match choice {
            Choice::Local => c.local.clone(),
            Choice::Server => c.server.clone(),
            Choice::Merged(v) if v.is_object() => Some(v),
            Choice::Merged(_) => return Err(SyncError::InvalidInput("a merged record must be a plain object".into())),
        };
        let key = c.key();
        let now = self.clock.now_ms();
        let (entity, events) = self
            .transact(std::slice::from_ref(&key), |tx| {
                let mut out = Applied::at(now);
                tx.write(Write::DeleteConflict(c.id.clone()));
                // Writes made while the conflict waited are superseded by the app's decision.
                let lane: Vec<Operation> = tx.lane(&key).to_vec();
                for o in &lane {
                    tx.write(Write::DeleteOp(o.id.clone()));
                }
                let e = tx.entity(&key).cloned().unwrap_or_else(|| Entity {
                    base: c.server.clone(),
                    version: c.server_version,
                    ..Entity::empty(&key, now)
                });
                let priority = lane.iter().map(|o| o.priority).min().unwrap_or(Priority::High);
                self.requeue(tx, Entity { last_modified: now, ..e }, result.clone(), priority, &mut out);
                Ok((tx.entity(&key).cloned(), out.events))
            })
            .await?;
        self.wrote_queue();
        self.deliver(events);
        self.remember(vec![AuditEntry::of(c, "manual", now, result)]);
        self.save_audit().await;
        Ok(entity)
    }
}

/// Leaves the conflict to the app: stored with the record marked `conflict`, and announced.
fn hold_for_app(tx: &mut Tx, conflict: Conflict, mut e: Entity, out: &mut Applied) {
    e.sync_status = SyncStatus::Conflict;
    out.events.push(Event::Conflict {
        conflict_id: conflict.id.clone(),
        collection: conflict.collection.clone(),
        id: conflict.entity_id.clone(),
    });
    out.events.push(change_event(&e.key(), Some(&e)));
    tx.write(Write::PutConflict(conflict));
    tx.write(Write::PutEntity(e));
}
