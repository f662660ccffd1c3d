// Types of `tidesync/devtools`.
import type { CSSProperties, ReactNode } from 'react';
import type { DebugFaults, DefaultSchema, SyncEngine } from './index.js';

export interface SyncDevtoolsProps<S = DefaultSchema> {
  /**
   * The engine to show. Leave it out inside a `<SyncProvider>` (tidesync/react) to use the
   * provider's; `null` renders nothing (an engine still opening).
   */
  engine?: SyncEngine<S> | null | undefined;
  /** Called with the faults in force whenever they change (the panel's buttons, `syncDebug`, failNext counting down). */
  onFaultsChange?: ((faults: DebugFaults) => void) | undefined;
  /** The app's own debug controls, shown with the fault buttons. */
  children?: ReactNode;
  /** Added to the root element's `tidesync-devtools` class. */
  className?: string | undefined;
  style?: CSSProperties | undefined;
}

/**
 * A debug panel for one engine: its status; fault injection (offline, fail the next N requests,
 * latency, clear; these and "Clear queue" need an engine opened with `debug: true`); a chart of
 * pending writes and requests per second; conflicts with base, local and server side by side,
 * resolved as local, server or merged JSON; dead letters (retry, discard); the write queue; the
 * push channel (`engine.realtimeStatus()`, where the engine has it); and the event log.
 *
 * ```tsx
 * import { SyncDevtools } from 'tidesync/devtools';
 * <SyncProvider engine={engine}><App />{import.meta.env.DEV && <SyncDevtools />}</SyncProvider>
 * ```
 */
export declare function SyncDevtools<S = DefaultSchema>(props: SyncDevtoolsProps<S>): ReactNode;
