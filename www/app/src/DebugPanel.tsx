// The debug panel: tidesync's own <SyncDevtools> (status, faults, chart, conflicts side by side,
// dead letters, queue, push channel, event log; everything is also in the console as
// `window.syncDebug`), with the demo's server-side fault beside its fault buttons.
import { SyncDevtools } from 'tidesync/devtools';
import { useFaults } from './faults';
import { useRejectNextWrite } from './reject';

export function DebugPanel() {
  const { report } = useFaults();
  return (
    <aside className="debug" data-testid="debug-panel">
      <SyncDevtools onFaultsChange={report}>
        <RejectNextWrite />
      </SyncDevtools>
    </aside>
  );
}

function RejectNextWrite() {
  const [rejecting, setRejecting] = useRejectNextWrite();
  return (
    <>
      <button
        type="button"
        data-testid="reject-next-write"
        className={rejecting ? 'tidesync-devtools-on' : ''}
        title="The next write request is answered 400, as a validation error of your backend: its writes are dead-lettered"
        onClick={() => setRejecting(!rejecting)}
      >
        {rejecting ? 'Rejecting next write…' : 'Server rejects next write (400)'}
      </button>
      {rejecting && (
        <p className="muted" data-testid="rejecting">
          the next write request will be answered 400
        </p>
      )}
    </>
  );
}
