// Demo helpers: values read from the engine again on every event (and on a timer).
import { useEffect, useState } from 'react';
import type { SyncEngine } from 'tidesync';
import { type Schema, useSyncEngine } from './sync';

export function useLive<T>(read: (engine: SyncEngine<Schema>) => Promise<T> | T, initial: T, pollMs = 0): T {
  const engine = useSyncEngine();
  const [value, setValue] = useState<T>(initial);
  useEffect(() => {
    let alive = true;
    let busy = false;
    let again = false;
    const run = async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      do {
        again = false;
        try {
          const v = await read(engine);
          if (alive) setValue(v);
        } catch {
          // CLOSED after the page closed the engine, OFFLINE, ...: keep the last value.
        }
      } while (again && alive);
      busy = false;
    };
    void run();
    const off = engine.subscribe(() => void run());
    const timer = pollMs ? setInterval(() => void run(), pollMs) : undefined;
    return () => {
      alive = false;
      off();
      clearInterval(timer);
    };
    // `read` is a fresh closure each render; the engine is what matters.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [engine, pollMs]);
  return value;
}

/** The current time, ticking every `ms`. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function ago(ms: number | null | undefined, now: number): string {
  if (ms == null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}
