// The injected faults of this window's engine (setFaults needs `debug: true`), for the sync badge:
// the debug panel (<SyncDevtools onFaultsChange>) reports every change it makes or sees, and while
// the panel is hidden they are read again after each event (the console's syncDebug can set them).
import { createContext, type ReactNode, useCallback, useContext, useEffect, useState } from 'react';
import type { DebugFaults } from 'tidesync';
import { useSyncEngine } from './sync';

interface Faults {
  faults: DebugFaults;
  report(f: DebugFaults): void;
}

const NONE: DebugFaults = { offline: false, failNext: 0, failStatus: 0, latencyMs: 0 };
const FaultsContext = createContext<Faults>({ faults: NONE, report: () => {} });

const same = (a: DebugFaults, b: DebugFaults) =>
  a.offline === b.offline && a.failNext === b.failNext && a.failStatus === b.failStatus && a.latencyMs === b.latencyMs;

export function FaultsProvider({ children }: { children: ReactNode }) {
  const engine = useSyncEngine();
  const [faults, set] = useState<DebugFaults>(NONE);
  const report = useCallback((f: DebugFaults) => set((old) => (same(old, f) ? old : f)), []);
  useEffect(() => engine.subscribe(() => void engine.setFaults({}).then(report, () => {})), [engine, report]);
  return <FaultsContext.Provider value={{ faults, report }}>{children}</FaultsContext.Provider>;
}

export const useFaults = () => useContext(FaultsContext);
