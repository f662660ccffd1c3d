// Queue size and request latency over time, in plain SVG.
export interface Sample {
  at: number;
  queue: number;
  latency: number | null;
}

const W = 340;
const H = 120;
const PAD = 28;
const SPAN_MS = 90_000;

export function Chart({ samples }: { samples: Sample[] }) {
  const end = samples.at(-1)?.at ?? Date.now();
  const maxQueue = Math.max(4, ...samples.map((s) => s.queue));
  const maxLatency = Math.max(100, ...samples.map((s) => s.latency ?? 0));
  const x = (at: number) => PAD + ((at - (end - SPAN_MS)) / SPAN_MS) * (W - 2 * PAD);
  const y = (v: number, max: number) => H - PAD / 2 - (v / max) * (H - PAD);
  const line = (pick: (s: Sample) => number | null, max: number) =>
    samples
      .filter((s) => pick(s) !== null)
      .map((s) => `${x(s.at).toFixed(1)},${y(pick(s) ?? 0, max).toFixed(1)}`)
      .join(' ');
  const last = samples.at(-1);
  return (
    <figure className="chart" data-testid="chart">
      <svg viewBox={`0 0 ${W} ${H}`} width="100%" role="img" aria-label="queue size and latency over time">
        <line x1={PAD} y1={H - PAD / 2} x2={W - PAD} y2={H - PAD / 2} className="axis" />
        <text x={2} y={y(maxQueue, maxQueue) + 4} className="queue-label">{maxQueue}</text>
        <text x={2} y={H - PAD / 2} className="queue-label">0</text>
        <text x={W - PAD + 2} y={y(maxLatency, maxLatency) + 4} className="latency-label">{Math.round(maxLatency)}</text>
        <text x={W - PAD + 2} y={H - PAD / 2} className="latency-label">0</text>
        <polyline points={line((s) => s.queue, maxQueue)} className="queue" data-testid="chart-queue" />
        <polyline points={line((s) => s.latency, maxLatency)} className="latency" data-testid="chart-latency" />
      </svg>
      <figcaption>
        <span className="queue-label">■ queue: {last?.queue ?? 0} pending</span>{' '}
        <span className="latency-label">■ request latency: {last?.latency == null ? '–' : `${Math.round(last.latency)} ms`} (avg)</span>
      </figcaption>
    </figure>
  );
}
