import { useState, useEffect, useRef, useMemo } from 'preact/hooks';
import uPlot from 'uplot';
import { get } from '../api.js';
import { ErrorBanner, useAction, fmtInt, fmtUsd } from '../ui.jsx';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

// Usage days are UTC, so the date inputs are too.
function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function defaultRange() {
  const end = new Date();
  const start = new Date(end.getTime() - 29 * 86400_000);
  return { start: isoDay(start), end: isoDay(end) };
}

// Every day of the range, so days without usage show as zero rather than being skipped.
function daysBetween(start, end) {
  const out = [];
  const last = Date.parse(`${end}T00:00:00Z`);
  for (let t = Date.parse(`${start}T00:00:00Z`); t <= last && out.length < 3700; t += 86400_000) out.push(t / 1000);
  return out;
}

function Chart({ title, testid, days, models, valueOf, format }) {
  const el = useRef(null);
  useEffect(() => {
    const node = el.current;
    if (!node) return undefined;
    const index = new Map(days.map((d, i) => [d, i]));
    const data = [days];
    const series = [{}];
    models.forEach(([model, buckets], i) => {
      const ys = days.map(() => 0);
      for (const b of buckets) {
        const at = index.get(Date.parse(`${b.day}T00:00:00Z`) / 1000);
        if (at !== undefined) ys[at] += valueOf(b);
      }
      data.push(ys);
      const color = COLORS[i % COLORS.length];
      series.push({ label: model, stroke: color, fill: `${color}22`, width: 2, points: { show: days.length < 40 }, value: (_, v) => (v == null ? '' : format(v)) });
    });
    const opts = {
      width: Math.max(300, node.clientWidth),
      height: 220,
      series,
      // Day ticks read as dates in UTC, matching the buckets.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      axes: [{}, { values: (_, ticks) => ticks.map(format), size: 70 }],
      // Counts start at zero; an all-zero series gets a small axis instead of uPlot's 0–100.
      scales: { x: { time: true }, y: { range: (_, __, max) => [0, max > 0 ? max * 1.1 : 1] } },
      legend: { show: true },
    };
    const plot = new uPlot(opts, data, node);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(300, node.clientWidth), height: 220 }));
    resize.observe(node);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [days, models]);
  return (
    <div class="card">
      <h2>{title}</h2>
      <div class="chart" data-testid={testid} ref={el} />
    </div>
  );
}

export function Usage() {
  const { error, setError, running, run } = useAction();
  const [range, setRange] = useState(defaultRange);
  const [report, setReport] = useState(null);

  const load = () =>
    run('load', async () => {
      const q = new URLSearchParams({ start: range.start, end: range.end, group_by: 'day,model' });
      setReport(await get(`/v1/usage?${q}`));
    });
  useEffect(() => {
    load();
  }, []);

  // Memoised on the report so the charts are rebuilt only when new data arrives.
  const { buckets, models, days, rows } = useMemo(() => {
    const buckets = report ? report.data : [];
    const byModel = new Map();
    for (const b of buckets) {
      const m = b.model || '(none)';
      if (!byModel.has(m)) byModel.set(m, []);
      byModel.get(m).push(b);
    }
    const models = [...byModel.entries()].sort(([a], [b]) => a.localeCompare(b));
    const days = report ? daysBetween(report.start, report.end) : [];
    const rows = [...buckets].sort((a, b) => (a.day || '').localeCompare(b.day || '') || (a.model || '').localeCompare(b.model || ''));
    return { buckets, models, days, rows };
  }, [report]);
  const total = report ? report.total : null;

  return (
    <div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <form
        class="card form-row"
        onSubmit={(e) => {
          e.preventDefault();
          load();
        }}
      >
        <label>
          Start (UTC)
          <input type="date" data-testid="usage-start" value={range.start} onInput={(e) => setRange({ ...range, start: e.currentTarget.value })} />
        </label>
        <label>
          End (UTC)
          <input type="date" data-testid="usage-end" value={range.end} onInput={(e) => setRange({ ...range, end: e.currentTarget.value })} />
        </label>
        <button type="submit" data-testid="usage-refresh" disabled={running.load}>
          {running.load ? 'Loading…' : 'Refresh'}
        </button>
      </form>

      {total && (
        <div class="stats">
          <div class="card stat">
            <div class="muted">Requests</div>
            <div class="big" data-testid="usage-total-requests">{total.requests}</div>
          </div>
          <div class="card stat">
            <div class="muted">Tokens (input + output)</div>
            <div class="big" data-testid="usage-total-tokens">{total.input_tokens + total.output_tokens}</div>
          </div>
          <div class="card stat">
            <div class="muted">Cost (USD)</div>
            <div class="big" data-testid="usage-total-cost">{fmtUsd(total.cost_usd)}</div>
          </div>
        </div>
      )}

      {report && buckets.length === 0 && (
        <div class="card empty" data-testid="usage-empty">
          No usage between {report.start} and {report.end}.
        </div>
      )}

      {buckets.length > 0 && (
        <>
          <Chart title="Tokens per day" testid="usage-chart-tokens" days={days} models={models} valueOf={(b) => b.input_tokens + b.output_tokens} format={(v) => fmtInt(Math.round(v))} />
          <Chart title="Cost per day (USD)" testid="usage-chart-cost" days={days} models={models} valueOf={(b) => b.cost_usd} format={fmtUsd} />
          <table data-testid="usage-table">
            <thead>
              <tr>
                <th>Day</th>
                <th>Model</th>
                <th class="num">Requests</th>
                <th class="num">Input tokens</th>
                <th class="num">Output tokens</th>
                <th class="num">Cached tokens</th>
                <th class="num">Cost (USD)</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((b) => (
                <tr key={`${b.day}/${b.model}`}>
                  <td>{b.day}</td>
                  <td>{b.model}</td>
                  <td class="num">{fmtInt(b.requests)}</td>
                  <td class="num">{fmtInt(b.input_tokens)}</td>
                  <td class="num">{fmtInt(b.output_tokens)}</td>
                  <td class="num">{fmtInt(b.cached_tokens)}</td>
                  <td class="num">{fmtUsd(b.cost_usd)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
