// The injected faults of this window's engine (setFaults needs `debug: true`).
import { createContext, type ReactNode, useCallback, useContext, useEffect, useState } from 'react';
import type { DebugFaults } from 'tidesync';
import { useSyncEngine } from './sync';

interface Faults {
  faults: DebugFaults;
  setFaults(f: Partial<DebugFaults>): Promise<void>;
}

const NONE: DebugFaults = { offline: false, failNext: 0, failStatus: 0, latencyMs: 0 };
const FaultsContext = createContext<Faults>({ faults: NONE, setFaults: async () => {} });

const same = (a: DebugFaults, b: DebugFaults) =>
  a.offline === b.offline && a.failNext === b.failNext && a.failStatus === b.failStatus && a.latencyMs === b.latencyMs;

export function FaultsProvider({ children }: { children: ReactNode }) {
  const engine = useSyncEngine();
  const [faults, set] = useState<DebugFaults>(NONE);
  const update = useCallback((f: DebugFaults) => set((old) => (same(old, f) ? old : f)), []);
  const setFaults = useCallback(async (f: Partial<DebugFaults>) => update(await engine.setFaults(f)), [engine, update]);
  // failNext counts down inside the engine, and the console (syncDebug) can change them too.
  useEffect(() => engine.subscribe(() => void engine.setFaults({}).then(update, () => {})), [engine, update]);
  return <FaultsContext.Provider value={{ faults, setFaults }}>{children}</FaultsContext.Provider>;
}

export const useFaults = () => useContext(FaultsContext);
