import { useState } from 'react';
import { isSyncError } from 'tidesync';

/** Errors of the user's own actions (failures of background sync are in the badge and the log). */
export function useActionError() {
  const [error, setError] = useState('');
  const run = async (f: () => Promise<unknown>) => {
    setError('');
    try {
      await f();
    } catch (e) {
      setError(isSyncError(e) ? `${e.code}: ${e.message}` : String(e));
    }
  };
  return { error, run };
}
