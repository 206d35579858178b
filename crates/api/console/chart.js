// The delivery chart: successes and failures per interval, from the attempt log, drawn
// as SVG bars (no library, no inline style).

import { h } from './dom.js';

const MINUTE = 60_000;
const STEPS = [1, 5, 15, 60, 360, 1440].map((m) => m * MINUTE);
const MAX_BARS = 30;

/** Attempts counted into intervals ending now: [{start, ok, failed}], and the step. */
export function buckets(attempts, now = Date.now()) {
  const times = attempts.map((a) => Date.parse(a.at)).filter((t) => !Number.isNaN(t));
  const first = times.length ? Math.min(...times) : now;
  const step = STEPS.find((s) => (now - first) / s < MAX_BARS) ?? STEPS[STEPS.length - 1];
  const end = Math.ceil((now + 1) / step) * step;
  const count = Math.min(MAX_BARS, Math.max(12, Math.ceil((end - first) / step)));
  const start = end - count * step;
  const bars = Array.from({ length: count }, (_, i) => ({ start: start + i * step, ok: 0, failed: 0 }));
  attempts.forEach((a, i) => {
    const t = times[i];
    if (t === undefined || t < start) return;
    const bar = bars[Math.min(count - 1, Math.floor((t - start) / step))];
    if (a.outcome === 'delivered') bar.ok += 1;
    else bar.failed += 1;
  });
  return { bars, step };
}

function stepName(step) {
  return step >= 1440 * MINUTE ? 'day' : step >= 60 * MINUTE ? `${step / (60 * MINUTE)} h` : `${step / MINUTE} min`;
}

/** The chart, with a text summary for screen readers and a legend. */
export function deliveryChart(attempts) {
  const { bars, step } = buckets(attempts);
  const width = 600;
  const height = 160;
  const top = 10;
  const bottom = 4;
  const max = Math.max(1, ...bars.map((b) => b.ok + b.failed));
  const slot = width / bars.length;
  const scale = (n) => (n / max) * (height - top - bottom);
  const ok = bars.reduce((n, b) => n + b.ok, 0);
  const failed = bars.reduce((n, b) => n + b.failed, 0);
  const summary = `Deliveries per ${stepName(step)} over the last ${bars.length} intervals: ${ok} succeeded, ${failed} failed.`;
  const svg = h('svg:svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary, class: 'chart',
    preserveAspectRatio: 'none',
  });
  svg.append(h('svg:line', { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: 'axis' }));
  bars.forEach((b, i) => {
    const x = i * slot + slot * 0.15;
    const w = slot * 0.7;
    const base = height - bottom;
    const okH = scale(b.ok);
    const failH = scale(b.failed);
    const label = `${new Date(b.start).toLocaleString()}: ${b.ok} succeeded, ${b.failed} failed`;
    const group = h('svg:g', { class: 'bar' }, h('svg:title', null, label));
    if (b.ok) group.append(h('svg:rect', { x, width: w, y: base - okH, height: okH, class: 'ok' }));
    if (b.failed) group.append(h('svg:rect', { x, width: w, y: base - okH - failH, height: failH, class: 'failed' }));
    svg.append(group);
  });
  // The times are HTML, not SVG text: the SVG stretches to the width, and would stretch them.
  const first = new Date(bars[0].start);
  const last = new Date(bars[bars.length - 1].start + step);
  return h('figure', { class: 'chart-box' },
    svg,
    h('div', { class: 'ticks', 'aria-hidden': 'true' },
      h('span', null, first.toLocaleTimeString()), h('span', null, last.toLocaleTimeString())),
    h('figcaption', null,
      h('span', { class: 'key ok' }, `${ok} succeeded`), ' ',
      h('span', { class: 'key failed' }, `${failed} failed`), ' ',
      h('span', { class: 'muted' }, `per ${stepName(step)}`)));
}
