// Keeps pkg/index.d.ts in step with what wasm-bindgen generates (pkg/tidesync.d.ts, from the Rust
// doc comments and `unchecked_return_type`s): the generated file names types that only
// index.d.ts defines, so they are provided globally here; then every generated method must exist
// on the package's SyncEngine, and each generated return type must accept the package's.
import type * as T from 'tidesync';
import type { SyncEngine } from 'tidesync';
import type { SyncEngine as Generated } from '../../pkg/tidesync.js';

declare global {
  type SyncRecord = T.SyncRecord;
  type FlushReport = T.FlushReport;
  type PullReport = T.PullReport;
  type SyncStatus = T.SyncStatus;
  type SyncMetrics = T.SyncMetrics;
  type PendingOp = T.PendingOp;
  type DeadLetter = T.DeadLetter;
  type SyncConflict = T.SyncConflict;
  type AuditEntry = T.AuditEntry;
  type SyncEvent = T.SyncEvent;
  type BuildInfo = T.BuildInfo;
  type DebugFaults = T.DebugFaults;
}

type Methods = Exclude<keyof Generated, 'free' | typeof Symbol.dispose>;
type Missing = Exclude<Methods, keyof SyncEngine>;
export const everyMethodWrapped: [Missing] extends [never] ? true : Missing = true;

// Same result types (modulo the schema generics, which default to the generated shapes).
type Result<F> = F extends (...args: never[]) => infer R ? R : F;
type Mismatch = {
  [K in Methods]: [Result<SyncEngine[K & keyof SyncEngine]>] extends [Result<Generated[K]>] ? never : K;
}[Methods];
export const sameResults: [Mismatch] extends [never] ? true : Mismatch = true;
