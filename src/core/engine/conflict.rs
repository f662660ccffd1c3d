//! Conflicts: merging our write with the server's state by the collection's policy (or the app's
//! resolver), queueing what is left to the app, and the app's resolutions.

use super::*;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_conflict(
        &self,
        tx: &mut Tx,
        op: &Operation,
        server_version: Option<u64>,
        server: Option<Value>,
        server_modified_ms: Option<u64>,
        now: u64,
        reason: Option<ConflictReason>,
        out: &mut Applied,
    ) -> Result<()> {
        let key = op.key();
        let entity = tx.entity(&key).cloned();
        // The rejected op and any later ones in the lane are folded into `local` already.
        let lane: Vec<Operation> = tx.lane(&key).to_vec();
        // Our side must be what we wrote, never a stored copy that fails its checksum: the newest
        // pending write holds its own copy (under its own checksum); with no good copy at all, the
        // server's state is taken as authoritative and the loss reported.
        let (local, corrupt) = match entity.as_ref() {
            Some(e) if !intact(e) => newest_copy(&lane).map_or((None, true), |copy| (copy, false)),
            e => (e.and_then(|e| e.data.clone()), false),
        };
        let base = entity.as_ref().and_then(|e| e.base.clone());
        let local_modified = entity.as_ref().map_or(now, |e| e.last_modified);
        for o in &lane {
            tx.write(Write::DeleteOp(o.id.clone()));
        }
        let priority = lane.iter().map(|o| o.priority).min().unwrap_or(op.priority);
        let mut e = entity.unwrap_or_else(|| Entity {
            collection: key.collection.clone(),
            id: key.id.clone(),
            data: None,
            base: None,
            version: None,
            last_modified: now,
            sync_status: SyncStatus::Pending,
            checksum: None,
        });
        e.base = server.clone();
        e.version = server_version.or(e.version);
        if server.is_some() && server == base && !corrupt {
            // The server still holds what we last saw of it (the record read before a write whose
            // version was unknown): no conflict, our state goes out again on the server's version.
            self.requeue(tx, &key, e, local, true, priority, now, out);
            return Ok(());
        }
        out.conflicts += 1;
        let spec = &self.config.collections.get(&op.collection).map(|c| c.merge.clone()).unwrap_or_default();
        let skew = self.state.borrow().skew_ms;
        // Compare times on one clock: two device stamps (the records' own `lastModified`, or our
        // tombstone's write time) as they are; ours against the server's clock skew-corrected.
        let local_raw = record_time(local.as_ref()).unwrap_or(local_modified);
        let (local_ms, server_ms) = match record_time(server.as_ref()) {
            Some(server_ms) => (local_raw, server_ms),
            None => ((local_raw as i64 + skew).max(0) as u64, server_modified_ms.unwrap_or(0)),
        };
        let stamps = Stamps { local_ms, server_ms };
        let reason = match reason {
            _ if corrupt => ConflictReason::Integrity,
            Some(r) => r,
            None if server.is_none() => ConflictReason::Deleted,
            None => ConflictReason::Version,
        };
        let custom = match corrupt {
            true => None,
            false => {
                self.resolvers.borrow().get(&op.collection).map(|f| f(base.as_ref(), local.as_ref(), server.as_ref()))
            }
        };
        let resolution = match custom {
            None if corrupt => {
                let err = SyncError::Integrity(format!(
                    "{}/{} does not match its checksum and no pending write holds a good copy: the server's \
                     state replaces it",
                    key.collection, key.id
                ));
                out.errors.push(ErrorEntry {
                    at: now,
                    code: err.code().into(),
                    message: err.to_string(),
                    status: None,
                });
                out.events.push(Event::Error { code: err.code().into(), message: err.to_string(), status: None });
                Resolution::Merged(server.clone())
            }
            None => merge(spec, base.as_ref(), local.as_ref(), server.as_ref(), &stamps),
            Some(Ok(Some(v))) => Resolution::Merged(Some(v)),
            Some(Ok(None)) => Resolution::Manual,
            Some(Err(message)) => {
                // A resolver that fails must not lose either side: the conflict waits for the app.
                out.errors.push(ErrorEntry {
                    at: now,
                    code: "CONFLICT".into(),
                    message: format!("resolver failed: {message}"),
                    status: None,
                });
                out.events.push(Event::Error {
                    code: "CONFLICT".into(),
                    message: format!("the merge function for '{}' failed: {message}", op.collection),
                    status: None,
                });
                Resolution::Manual
            }
        };
        match resolution {
            Resolution::Manual => {
                let conflict = Conflict {
                    id: format!("{}-{}", op.id, now),
                    collection: key.collection.clone(),
                    entity_id: key.id.clone(),
                    local,
                    server,
                    base,
                    server_version,
                    reason,
                    detected_at: now,
                };
                e.sync_status = SyncStatus::Conflict;
                out.events.push(Event::Conflict {
                    conflict_id: conflict.id.clone(),
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                });
                out.events.push(change_event(&key, Some(&e)));
                tx.write(Write::PutConflict(conflict));
                tx.write(Write::PutEntity(e));
            }
            Resolution::Merged(result) => {
                out.audit.push(AuditEntry {
                    at: now,
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    how: "auto".into(),
                    reason,
                    base,
                    local,
                    server: server.clone(),
                    result: result.clone(),
                });
                self.requeue(tx, &key, e, result, server.is_some(), priority, now, out);
            }
        }
        Ok(())
    }

    /// Writes `result` as the entity's state on top of the server's (already in `e.base`), and
    /// queues what the server needs to reach it, under a fresh op id (the old id's conflict is in
    /// the server's idempotency ledger).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn requeue(
        &self,
        tx: &mut Tx,
        key: &EntityKey,
        mut e: Entity,
        result: Option<Value>,
        on_server: bool,
        priority: Priority,
        now: u64,
        out: &mut Applied,
    ) {
        let kind = match (&result, on_server) {
            _ if result == e.base => None,
            (None, _) => Some(OpKind::Delete),
            (Some(_), true) => Some(OpKind::Update),
            (Some(_), false) => Some(OpKind::Create),
        };
        e.data = result;
        e.checksum = e.data.as_ref().map(checksum);
        match kind {
            None if e.data.is_none() => {
                tx.write(Write::DeleteEntity(key.clone()));
                out.events.push(change_event(key, None));
                return;
            }
            None => e.sync_status = SyncStatus::Synced,
            Some(kind) => {
                e.sync_status = SyncStatus::Pending;
                let seq = tx.take_seq();
                let op = new_op(
                    uuid(&self.clock),
                    seq,
                    key,
                    kind,
                    e.data.clone(),
                    e.base.as_ref(),
                    e.version,
                    priority,
                    now,
                );
                tx.write(Write::PutOp(op));
            }
        }
        out.events.push(change_event(key, Some(&e)));
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
            .store
            .transact(std::slice::from_ref(&key), |tx| {
                let mut out = Applied::default();
                tx.write(Write::DeleteConflict(c.id.clone()));
                // Writes made while the conflict waited are superseded by the app's decision.
                let lane: Vec<Operation> = tx.lane(&key).to_vec();
                for o in &lane {
                    tx.write(Write::DeleteOp(o.id.clone()));
                }
                let e = tx.entity(&key).cloned().unwrap_or(Entity {
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    data: None,
                    base: c.server.clone(),
                    version: c.server_version,
                    last_modified: now,
                    sync_status: SyncStatus::Pending,
                    checksum: None,
                });
                let on_server = e.base.is_some();
                let priority = lane.iter().map(|o| o.priority).min().unwrap_or(Priority::High);
                self.requeue(
                    tx,
                    &key,
                    Entity { last_modified: now, ..e },
                    result.clone(),
                    on_server,
                    priority,
                    now,
                    &mut out,
                );
                Ok((tx.entity(&key).cloned(), out.events))
            })
            .await?;
        self.queue_changed();
        let entry = AuditEntry {
            at: now,
            collection: c.collection,
            id: c.entity_id,
            how: "manual".into(),
            reason: c.reason,
            base: c.base,
            local: c.local,
            server: c.server,
            result,
        };
        self.state.borrow_mut().events.extend(events);
        self.remember(vec![entry]);
        self.save_audit().await;
        Ok(entity)
    }
}
