//! The flush: sending due ops batch by batch, and applying the server's answers (accepted, failed).
//! A batch is marked sent, and its answers applied, in transactions of `TX_CHUNK` ops: each op with
//! its record in one, so a flush cut short between them leaves ops that are sent again with their
//! idempotency keys, as after a lost answer.

use super::conflict::ServerSide;
use super::pull::Fetched;
use super::*;

/// The queue as a flush pass sees it.
struct Snapshot {
    ops: Vec<Operation>,
    /// Lanes that must not send (`paused_lanes`).
    paused: VecSet<EntityKey>,
    /// Read whole from the store (not rebuilt from the last pass).
    whole: bool,
}

/// What a pass does before sending.
enum Gate {
    Send,
    /// Stop: the report says why.
    Stop,
    /// Read the whole queue first (a stop reports counts from a whole read).
    ReadAll,
}

/// The server's answer to one op of a batch.
struct Answer<'a> {
    response: &'a std::result::Result<PushResponse, Failure>,
    outcome: Option<&'a Outcome>,
    /// Its record as fetched after a checksum mismatch (`fetch_mismatched`).
    fetched: Option<&'a std::result::Result<Option<ServerRecord>, Failure>>,
}

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Sends every due op, batch by batch, until none is due, the device is offline or the
    /// circuit breaker opens. A flush already running in this engine is joined, not repeated.
    pub async fn flush(&self) -> Result<FlushReport> {
        self.check_open()?;
        let joined = {
            let mut st = self.state.borrow_mut();
            st.flush_again |= st.flushing;
            std::mem::replace(&mut st.flushing, true)
        };
        if joined {
            while self.state.borrow().flushing {
                self.clock.sleep(5).await;
            }
            return Ok(self.state.borrow().last_report.clone());
        }
        let started = self.clock.now_ms();
        let result = match self.settle(started).await {
            Ok(()) => self.flush_passes().await,
            Err(e) => Err(e),
        };
        self.save_audit().await;
        let mut st = self.state.borrow_mut();
        st.flushing = false;
        st.metrics.last_sync_duration_ms = Some(self.clock.now_ms().saturating_sub(started));
        match &result {
            Ok(report) => {
                st.last_report = report.clone();
                st.events.push(Event::Sync { report: report.clone() });
            }
            Err(e) => st.events.push(Event::error(e)),
        }
        result
    }

    async fn flush_passes(&self) -> Result<FlushReport> {
        let mut report = FlushReport::default();
        // Lowered when the server refuses a batch as too large (413).
        let mut batch_cap = usize::MAX;
        // The queue as of the last pass: read whole once, then only the lanes a pass touched are read
        // again. `None` reads it whole (first pass, a surprise from another tab, or to make sure
        // nothing arrived meanwhile before stopping). Safe to reuse: `mark_sent` sends each lane's
        // head as it is in the store then, not as the snapshot remembers it.
        let mut snapshot: Option<Snapshot> = None;
        let mut epoch = self.state.borrow().queue_epoch;
        loop {
            self.state.borrow_mut().flush_again = false;
            let now = self.clock.now_ms();
            let decision = self.network();
            if std::mem::replace(&mut epoch, self.state.borrow().queue_epoch) != epoch {
                snapshot = None;
            }
            let snap = match snapshot.take() {
                Some(snap) => snap,
                None => self.read_queue().await?,
            };
            self.state.borrow_mut().metrics.record_queue_size(snap.ops.len());
            report.remaining = snap.ops.len();
            report.next_attempt_at = next_due(&snap.ops, &snap.paused);
            match self.gate(&decision, snap.whole, now, &mut report) {
                Gate::Send => {}
                Gate::Stop => return Ok(report),
                Gate::ReadAll => continue,
            }
            let limit = decision.batch_size.min(self.config.max_batch_size).min(batch_cap).max(1);
            let heads: Vec<Operation> = ready_heads(&snap.ops, &snap.paused, now, limit).into_iter().cloned().collect();
            if heads.is_empty() {
                match snap.whole {
                    true => return Ok(report),
                    false => continue,
                }
            }
            let batch = self.mark_sent(heads).await?;
            if batch.is_empty() {
                continue;
            }
            let t0 = self.clock.now_ms();
            let response = self.transport.push(&batch, &self.device_id).await;
            let t1 = self.clock.now_ms();
            if batch.len() > 1 && response.as_ref().err().and_then(|f| f.error.status()) == Some(413) {
                // Too large as a whole: no op is at fault yet. Send halves, until a single op that
                // is too large on its own is refused (and dead-lettered) alone.
                batch_cap = batch.len() / 2;
                report.sent += batch.len();
                continue;
            }
            let pausing = (report.conflicts, report.dead_lettered);
            let (waits, lanes) = self.apply_response(&batch, response, (t0, t1), &mut report).await?;
            if waits && !self.state.borrow().flush_again {
                return self.final_count(report).await;
            }
            // Only a conflict or a dead letter made by this pass can pause another lane.
            let paused_more = (report.conflicts, report.dead_lettered) != pausing;
            snapshot = Some(self.next_snapshot(snap, &batch, lanes, paused_more).await?);
        }
    }

    /// The whole queue, read from the store.
    async fn read_queue(&self) -> Result<Snapshot> {
        let epoch = self.state.borrow().delta_epoch;
        let (ops, conflicts) = self.store.load_queue().await?;
        let paused = self.paused_lanes(&conflicts).await?;
        // `status().nextAttemptAt`: exact as read, unless a write landed meanwhile (the read may
        // or may not hold it; the write brought the bound forward already).
        let due = next_due(&ops, &paused);
        let mut st = self.state.borrow_mut();
        st.next_due = match (st.delta_epoch == epoch, st.next_due, due) {
            (true, ..) => due,
            (false, Some(a), Some(b)) => Some(a.min(b)),
            (false, a, b) => a.or(b),
        };
        Ok(Snapshot { ops, paused, whole: true })
    }

    /// Whether a pass may send, as the network and the circuit breaker allow.
    fn gate(&self, decision: &NetDecision, whole: bool, now: u64, report: &mut FlushReport) -> Gate {
        if (decision.paused || !self.state.borrow().breaker.would_allow(now)) && !whole {
            return Gate::ReadAll;
        }
        if decision.paused {
            report.offline = true;
            return Gate::Stop;
        }
        let mut st = self.state.borrow_mut();
        if !st.breaker.allow(now) {
            report.breaker_open = true;
            let reopens = st.breaker.reopens_at();
            report.next_attempt_at = report.next_attempt_at.map(|t| t.max(reopens.unwrap_or(t)));
            return Gate::Stop;
        }
        Gate::Send
    }

    /// The report of a flush that stops because an op waits for a retry, counted from the store.
    async fn final_count(&self, mut report: FlushReport) -> Result<FlushReport> {
        let snap = self.read_queue().await?;
        report.remaining = snap.ops.len();
        report.next_attempt_at = next_due(&snap.ops, &snap.paused);
        report.breaker_open = matches!(self.state.borrow().breaker.state(), BreakerState::Open { .. });
        Ok(report)
    }

    /// The queue after a pass: the batch's lanes as the answers left them (`lanes`), the others as
    /// they were; the paused lanes read again only when the pass made a conflict or a dead letter.
    async fn next_snapshot(
        &self,
        snap: Snapshot,
        batch: &[Operation],
        lanes: VecMap<EntityKey, Vec<Operation>>,
        paused_more: bool,
    ) -> Result<Snapshot> {
        let Snapshot { mut ops, paused, .. } = snap;
        // Keyed by borrowed names: no allocation per queued op and pass.
        let touched: VecMap<(&str, &str), &Operation> =
            batch.iter().map(|o| ((o.collection.as_str(), o.entity_id.as_str()), o)).collect();
        ops.retain(|o| !touched.contains_key(&(o.collection.as_str(), o.entity_id.as_str())));
        ops.extend(lanes.into_values().flatten());
        let paused = match paused_more {
            true => self.paused_lanes(&self.store.conflicts().await?).await?,
            false => paused,
        };
        Ok(Snapshot { ops, paused, whole: false })
    }

    /// Lanes that must not send: a conflict waits for the app, or a dead-lettered op may have been
    /// applied by the server (its answer never came). A later write sent on top of the latter would
    /// be merged against a server state that may or may not hold it, counting a `sum` twice; so the
    /// record waits until the app retries that op (same id: the server's ledger deduplicates it) or
    /// discards it.
    async fn paused_lanes(&self, conflicts: &[Conflict]) -> Result<VecSet<EntityKey>> {
        let mut paused: VecSet<EntityKey> = conflicts.iter().map(Conflict::key).collect();
        paused.extend(self.store.dead_letters().await?.iter().filter(|d| d.maybe_applied).map(|d| d.op.key()));
        Ok(paused)
    }

    /// Marks the batch's ops as sent (in parts of `TX_CHUNK`), and returns them as they are now:
    /// another tab may have coalesced a write into one of them since we read the queue.
    async fn mark_sent(&self, heads: Vec<Operation>) -> Result<Vec<Operation>> {
        let mut batch = Vec::with_capacity(heads.len());
        for part in heads.chunks(TX_CHUNK) {
            let keys: Vec<EntityKey> = part.iter().map(Operation::key).collect();
            self.transact(&keys, |tx| {
                for expected in part {
                    // Only the op that is still the lane's head goes out.
                    let Some(head) = tx.lane(&expected.key()).first().cloned() else { continue };
                    if head.id != expected.id {
                        continue;
                    }
                    if !head.sent {
                        let mut h = head.clone();
                        h.sent = true;
                        tx.write(Write::PutOp(h.clone()));
                        batch.push(h);
                    } else {
                        batch.push(head);
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok(batch)
    }

    /// Applies the server's answers to the batch (in parts of `TX_CHUNK`). Returns whether the
    /// flush should stop here (an op waits for a retry), and the batch's lanes as they are now.
    async fn apply_response(
        &self,
        batch: &[Operation],
        response: std::result::Result<PushResponse, Failure>,
        (t0, t1): (u64, u64),
        report: &mut FlushReport,
    ) -> Result<(bool, VecMap<EntityKey, Vec<Operation>>)> {
        self.note_round_trip(&response, batch.len(), t0, t1);
        report.sent += batch.len();
        let fetched: Fetched = match &response {
            Ok(r) => self.fetch_mismatched(batch, r).await,
            Err(_) => Vec::new(),
        };
        let results: VecMap<&str, &Outcome> = match &response {
            Ok(r) => r.results.iter().map(|r| (r.op_id.as_str(), &r.outcome)).collect(),
            Err(_) => VecMap::default(),
        };
        if let Err(f) = &response {
            self.state.borrow_mut().metrics.record_error(ErrorEntry::of(t1, &f.error));
        }
        let (mut retried, mut dead) = (0, 0);
        let mut lanes = VecMap::default();
        for part in batch.chunks(TX_CHUNK) {
            let keys: Vec<EntityKey> = part.iter().map(Operation::key).collect();
            let mut out = self
                .transact(&keys, |tx| {
                    let mut out = Applied::at(t1);
                    for op in part {
                        // Only act on the op if it is still queued (another flusher may have finished it).
                        if !tx.lane(&op.key()).iter().any(|o| o.id == op.id) {
                            continue;
                        }
                        let answer = Answer {
                            response: &response,
                            outcome: results.get(op.id.as_str()).copied(),
                            fetched: fetched.iter().find(|(id, _)| *id == op.id).map(|(_, r)| r),
                        };
                        self.apply_answer(tx, op, answer, &mut out)?;
                    }
                    out.lanes = tx.take_lanes();
                    Ok(out)
                })
                .await?;
            self.tally(&out, report);
            (retried, dead) = (retried + out.retried, dead + out.dead);
            for (key, lane) in std::mem::take(&mut out.lanes) {
                lanes.insert(key, lane);
            }
            self.absorb(out);
            self.hand_over();
        }
        // Stop the flush only when something waits for a retry (sending on would spin); a dead
        // letter removed its op, so the next pass makes progress.
        let waits = retried > 0 || (response.is_err() && dead == 0);
        Ok((waits, lanes))
    }

    /// The request's effect on the circuit breaker, the round-trip time and the server's clock skew.
    fn note_round_trip(&self, response: &std::result::Result<PushResponse, Failure>, sent: usize, t0: u64, t1: u64) {
        let mut st = self.state.borrow_mut();
        st.metrics.ops_sent += sent as u64;
        match response {
            Ok(r) => {
                st.breaker.on_success();
                st.rtt.record((t1 - t0) as f64);
                st.metrics.record_latency((t1 - t0) as f64);
                if let Some(server) = r.server_time_ms {
                    st.skew_ms = server as i64 - ((t0 + t1) / 2) as i64;
                }
            }
            Err(f) if f.error == SyncError::Offline => {}
            Err(_) => st.breaker.on_failure(t1),
        }
    }

    /// One op's answer, inside the batch's transaction.
    fn apply_answer(&self, tx: &mut Tx, op: &Operation, answer: Answer, out: &mut Applied) -> Result<()> {
        match (answer.response, answer.outcome) {
            (Err(f), _) => self.on_failure(tx, op, f, out),
            (Ok(_), None) => {
                let message = format!("the server's response has no result for op {}", op.id);
                self.on_failure(tx, op, &Failure::new(SyncError::Protocol(message)), out)
            }
            (Ok(_), Some(Outcome::Accepted { version, data, .. })) => match answer.fetched {
                None => self.on_accepted(tx, op, *version, data.clone(), None, out)?,
                Some(Ok(server)) => self.on_accepted(tx, op, *version, None, Some(server), out)?,
                // Applied, but what the server holds is unknown: the op stays (same id, so the
                // server's ledger answers its retry) until the record can be fetched.
                Some(Err(f)) => self.on_failure(tx, op, f, out),
            },
            (Ok(_), Some(Outcome::Conflict { server_version, server_data, deleted, server_modified_ms })) => {
                let server = ServerSide {
                    version: *server_version,
                    data: if *deleted { None } else { server_data.clone() },
                    modified_ms: *server_modified_ms,
                };
                self.on_conflict(tx, op, server, None, out)?
            }
            (Ok(_), Some(Outcome::Failed(f))) => self.on_failure(tx, op, f, out),
        }
        Ok(())
    }

    /// Adds a batch's results to the flush's report and the metrics; a write the server may have
    /// applied brings the next settling forward.
    fn tally(&self, out: &Applied, report: &mut FlushReport) {
        report.accepted += out.accepted;
        report.conflicts += out.conflicts;
        report.retried += out.retried;
        report.dead_lettered += out.dead;
        let mut st = self.state.borrow_mut();
        st.metrics.ops_failed += (out.retried + out.dead) as u64;
        st.metrics.dead_lettered += out.dead as u64;
        if out.accepted > 0 {
            st.metrics.last_successful_sync = Some(out.now);
        }
        for a in &out.attempts_accepted {
            st.metrics.record_accepted(*a);
        }
        for e in &out.errors {
            st.metrics.record_error(e.clone());
        }
        for e in &out.events {
            if let Event::Stalled { retry_at: Some(t), .. } = e {
                st.settle_due = Some(st.settle_due.map_or(*t, |d| d.min(*t)));
            }
        }
    }

    /// The server applied `op` (at `version`, holding `data` when it echoed it). `fetched`: the
    /// server echoed a checksum that did not match, and this is its record as fetched afterwards
    /// (`None` inside: it holds none); it is taken instead of the echo.
    fn on_accepted(
        &self,
        tx: &mut Tx,
        op: &Operation,
        version: Option<u64>,
        data: Option<Value>,
        fetched: Option<&Option<ServerRecord>>,
        out: &mut Applied,
    ) -> Result<()> {
        let key = op.key();
        tx.write(Write::DeleteOp(op.id.clone()));
        out.accepted += 1;
        out.attempts_accepted.push(op.attempts);
        let rest: Vec<Operation> = tx.lane(&key).to_vec();
        let (version, server_state) = match fetched {
            None => (version, if op.kind == OpKind::Delete { None } else { data.or_else(|| op.payload.clone()) }),
            Some(r) => (r.as_ref().and_then(|r| r.version).or(version), r.as_ref().and_then(|r| r.data.clone())),
        };
        let Some(mut e) = tx.entity(&key).cloned() else {
            if server_state.is_some() && rest.is_empty() {
                // The record was deleted here while this write's answer was lost (it waited in the
                // dead letters): the server now holds a record we deleted. Delete it there too.
                let tombstone = Entity { base: server_state, version, ..Entity::empty(&key, out.now) };
                self.requeue(tx, tombstone, None, op.priority, out);
            }
            return Ok(());
        };
        if let (Some(server), Some(next)) = (fetched, rest.first().filter(|n| !n.sent)) {
            // Later writes were made on top of what we sent, and the server holds something else:
            // rebase them onto its record as a pull does (a 3-way merge whose base is what we sent,
            // which the server acknowledged).
            e.base = op.payload.clone();
            e.version = version.or(e.version);
            tx.write(Write::PutEntity(e));
            let server =
                ServerSide { version, data: server_state, modified_ms: server.as_ref().and_then(|r| r.modified_ms) };
            let next = next.clone();
            return self.on_conflict(tx, &next, server, Some(ConflictReason::Integrity), out);
        }
        e.base = server_state.clone();
        e.version = version.or(e.version);
        let gone = match fetched {
            Some(_) => server_state.is_none(),
            None => op.kind == OpKind::Delete && e.data.is_none(),
        };
        if rest.is_empty() && gone {
            tx.write(Write::DeleteEntity(key.clone()));
            out.events.push(change_event(&key, None));
            return Ok(());
        }
        if let Some(next) = rest.first() {
            // The next write in the lane was made on top of this one: it now expects the new version.
            let mut next = next.clone();
            next.base_version = e.version;
            tx.write(Write::PutOp(next));
            e.sync_status = SyncStatus::Pending;
        } else {
            // Nothing newer is pending: the server's state (it may have added fields) is ours.
            if server_state.is_some() {
                e.data = server_state;
                e.checksum = e.data.as_ref().map(checksum);
            }
            e.sync_status = SyncStatus::Synced;
        }
        out.events.push(change_event(&key, Some(&e)));
        tx.write(Write::PutEntity(e));
        Ok(())
    }

    /// The op failed: it waits for a retry with backoff, or, out of attempts or refused for good,
    /// becomes a dead letter.
    fn on_failure(&self, tx: &mut Tx, op: &Operation, f: &Failure, out: &mut Applied) {
        let Some(mut o) = tx.lane(&op.key()).iter().find(|o| o.id == op.id).cloned() else { return };
        let error = f.error.as_auth().unwrap_or_else(|| f.error.clone());
        out.errors.push(ErrorEntry::of(out.now, &error));
        if f.error != SyncError::Offline {
            o.attempts += 1;
        }
        o.last_error = Some(error.to_string());
        o.last_status = error.status();
        let class = failure_class(&f.error, op.kind);
        let retryable = matches!(class, Class::Retryable | Class::Reauth | Class::Conflict);
        let exhausted = o.attempts >= self.config.retry.max_attempts
            || out.now.saturating_sub(o.created_at) >= self.config.retry.max_age_ms;
        if retryable && !exhausted {
            let (r1, r2) = (self.clock.random_u64(), self.clock.random_u64());
            let delay = self.config.retry.next_delay(o.attempts.saturating_sub(1), f.retry_after_ms, r1, r2);
            o.next_attempt_at = out.now + delay;
            tx.write(Write::PutOp(o));
            out.retried += 1;
            return;
        }
        // The write keeps the head of its lane, to be resent under its id when it is due
        // (`settle`), unless the server said it conflicts (it applied nothing; the record's later
        // writes go on). A write whose answer never came may have been applied; one refused for
        // now (401, 408, 425, 429) must not be overtaken by the record's later writes either.
        let lane_waits = matches!(class, Class::Retryable | Class::Reauth);
        self.dead_letter(tx, o, &error, lane_waits, out);
    }

    /// Moves `o` out of its lane into the dead letters, with its events.
    fn dead_letter(&self, tx: &mut Tx, o: Operation, error: &SyncError, maybe_applied: bool, out: &mut Applied) {
        let key = o.key();
        tx.write(Write::DeleteOp(o.id.clone()));
        if o.kind == OpKind::Create {
            // The writes queued behind a create were made as updates of the record it would
            // create. It will not: an update without a base version would overwrite whatever the
            // server holds blindly, so the next write creates the record instead (a conflict
            // then merges it with another device's record of the same id).
            if let Some(next) =
                tx.lane(&key).first().filter(|n| !n.sent && n.kind == OpKind::Update && n.base_version.is_none())
            {
                let next = Operation { kind: OpKind::Create, ..next.clone() };
                tx.write(Write::PutOp(next));
            }
        }
        out.dead += 1;
        let (code, message) = (error.code().to_string(), error.to_string());
        out.events.push(Event::DeadLetter {
            op_id: o.id.clone(),
            collection: key.collection.clone(),
            id: key.id.clone(),
            code: code.clone(),
            message: message.clone(),
        });
        if maybe_applied {
            out.events.push(Event::Stalled {
                op_id: o.id.clone(),
                collection: key.collection.clone(),
                id: key.id.clone(),
                message: match error.status() {
                    Some(400..=499) => {
                        format!("{}/{}: writes wait: {} was refused for now ({message})", key.collection, key.id, o.id)
                    }
                    _ => format!(
                        "{}/{}: writes wait: the server may have applied {} ({message})",
                        key.collection, key.id, o.id
                    ),
                },
                retry_at: self.settle_at(out.now, o.created_at),
            });
        }
        let (status, at) = (error.status(), out.now);
        tx.write(Write::PutDeadLetter(DeadLetter { op: o, error: message, code, status, maybe_applied, at }));
        if let Some(mut e) = tx.entity(&key).cloned() {
            e.sync_status = SyncStatus::Error;
            out.events.push(change_event(&key, Some(&e)));
            tx.write(Write::PutEntity(e));
        }
    }
}

/// What a failure means for its op, by the status classes of `retry::classify_status`: tried again
/// are a network failure or server error (`Retryable`; also `Integrity`: the server applied the op
/// but its record could not be fetched to check it), a 401 the transport could not cure with a
/// fresh token (`Reauth`), and a conflict answer without the server's state (`Conflict`).
fn failure_class(error: &SyncError, kind: OpKind) -> Class {
    match error {
        SyncError::Http { status, .. } => classify_status(*status, kind == OpKind::Create),
        SyncError::Network(_)
        | SyncError::Timeout
        | SyncError::Protocol(_)
        | SyncError::Offline
        | SyncError::Integrity(_) => Class::Retryable,
        _ => Class::Permanent,
    }
}
