// Our own SVG line chart for range-query results (resultType "matrix").
//
// renderChart(container, legend, series, {start, end, step}) draws into
// `container` an <svg id="graph" data-series-count="N"> with one
// <path class="series-line"> per series, a local-time axis, a value axis
// with "nice" ticks and SI-prefixed labels, a legend, and a crosshair with
// a tooltip that follows the mouse. Times are milliseconds, step seconds.

import { el, formatSeries, formatLocalTime } from './common.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const HEIGHT = 380;
const MARGIN = { top: 12, right: 16, bottom: 30 };

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
  '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#e6550d',
];

/** The color of series number `i`: a fixed palette, then golden-angle hues. */
export function seriesColor(i) {
  if (i < PALETTE.length) return PALETTE[i];
  return `hsl(${Math.round((i * 137.508) % 360)}, 62%, 45%)`;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** Ticks at 1, 2 or 5 times a power of ten covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) {
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= d;
    max += d;
  }
  const rough = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) {
    // Multiply from lo instead of accumulating, to avoid 0.30000000000000004.
    ticks.push(Number((lo + i * step).toPrecision(12)));
  }
  return { ticks, step, min: lo, max: hi };
}

const SI = [
  [1e24, 'Y'], [1e21, 'Z'], [1e18, 'E'], [1e15, 'P'], [1e12, 'T'], [1e9, 'G'],
  [1e6, 'M'], [1e3, 'k'], [1, ''], [1e-3, 'm'], [1e-6, 'µ'], [1e-9, 'n'],
  [1e-12, 'p'], [1e-15, 'f'],
];

/**
 * Formats axis tick values with one SI prefix chosen from the largest
 * tick, and just enough decimals to tell ticks `step` apart.
 */
export function formatTicks(ticks, step) {
  const maxAbs = Math.max(...ticks.map(Math.abs));
  if (maxAbs === 0) return ticks.map(() => '0');
  // Plain numbers up to 9999 read better than "2.5k".
  const [scale, prefix] = SI.find(([f]) => maxAbs >= (f === 1e3 ? 1e4 : f)) || SI[SI.length - 1];
  const decimals = Math.min(6, Math.max(0, -Math.floor(Math.log10(step / scale) + 1e-9)));
  return ticks.map((t) => (t === 0 ? '0' : `${(t / scale).toFixed(decimals)}${prefix}`));
}

/** A single value with SI prefix and up to 4 significant digits. */
export function formatSI(v) {
  if (!isFinite(v)) return String(v);
  if (v === 0) return '0';
  const abs = Math.abs(v);
  const [scale, prefix] = SI.find(([f]) => abs >= f) || SI[SI.length - 1];
  return `${Number((v / scale).toPrecision(4))}${prefix}`;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY,
];

const pad = (n) => String(n).padStart(2, '0');

/**
 * Time ticks in local time between start and end (ms): aligned to the
 * interval in the local time zone (sub-day) or to local midnights (days).
 */
export function timeTicks(start, end, maxTicks) {
  const span = Math.max(end - start, 1);
  const interval = TIME_STEPS.find((s) => span / s <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
  const ticks = [];
  if (interval < DAY) {
    const offset = -new Date(start).getTimezoneOffset() * MINUTE;
    let t = Math.ceil((start + offset) / interval) * interval - offset;
    for (; t <= end && ticks.length < 1000; t += interval) ticks.push(t);
  } else {
    const days = Math.round(interval / DAY);
    const d = new Date(start);
    d.setHours(0, 0, 0, 0);
    if (d.getTime() < start) d.setDate(d.getDate() + 1);
    if (days >= 28) d.setDate(1);
    while (d.getTime() < start) d.setMonth(d.getMonth() + 1);
    while (d.getTime() <= end && ticks.length < 1000) {
      ticks.push(d.getTime());
      if (days >= 28) d.setMonth(d.getMonth() + Math.round(days / 30));
      else d.setDate(d.getDate() + days);
    }
  }
  const label = (t) => {
    const d = new Date(t);
    const midnight = d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0;
    if (interval < MINUTE) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (interval < DAY && !midnight) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (span > 365 * DAY) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  };
  return ticks.map((t) => ({ t, label: label(t) }));
}

/** Parsed series: {metric, name, color, points: [[ms, value], ...]}. */
function prepare(result) {
  return result.map((s, i) => ({
    metric: s.metric,
    name: formatSeries(s.metric),
    color: seriesColor(i),
    points: (s.values || []).map(([t, v]) => [t * 1000, parseFloat(v)]),
    hidden: false,
  }));
}

/** Index of the point in `points` closest in time to `t`. */
function nearestIndex(points, t) {
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(points[lo - 1][0] - t) <= Math.abs(points[lo][0] - t)) lo -= 1;
  return lo;
}

/**
 * Draws `result` (the API's matrix) into `container` and the legend into
 * `legend`. `range` is {start, end} in ms and `step` in seconds.
 */
export function renderChart(container, legend, result, range) {
  const series = prepare(result);
  const state = { series, range };
  const draw = () => drawInto(container, state);
  drawLegend(legend, state, draw);
  draw();
  let timer = null;
  const onResize = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (container.isConnected) draw();
      else window.removeEventListener('resize', onResize);
    }, 100);
  };
  window.addEventListener('resize', onResize);
}

function drawLegend(legend, state, redraw) {
  legend.replaceChildren();
  state.series.forEach((s) => {
    const item = el('div', {
      class: 'legend-item',
      title: 'Click to hide or show this series',
      onclick: () => {
        s.hidden = !s.hidden;
        item.classList.toggle('legend-hidden', s.hidden);
        redraw();
      },
    },
    el('span', { class: 'legend-swatch', style: `background:${s.color}` }),
    el('span', { class: 'legend-label' }, s.name));
    legend.append(item);
  });
}

function drawInto(container, state) {
  const { series, range } = state;
  const { start, end, step } = range;
  const width = Math.max(container.clientWidth || 0, 320) || 900;
  const visible = series.filter((s) => !s.hidden);

  let min = Infinity;
  let max = -Infinity;
  for (const s of visible) {
    for (const [, v] of s.points) {
      if (isFinite(v)) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
    }
  }
  if (min === Infinity) {
    min = 0;
    max = 1;
  }
  const y = niceTicks(min, max, 5);
  const yLabels = formatTicks(y.ticks, y.step);
  const left = 14 + 7 * Math.max(...yLabels.map((l) => l.length));
  const plotW = width - left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const xOf = (t) => left + ((t - start) / Math.max(end - start, 1)) * plotW;
  const yOf = (v) => MARGIN.top + plotH - ((v - y.min) / (y.max - y.min)) * plotH;

  const root = svg('svg', {
    id: 'graph',
    width,
    height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`,
    'data-series-count': series.length,
    role: 'img',
  });

  // Value axis: grid lines and labels.
  const yAxis = svg('g', { class: 'axis axis-y' });
  y.ticks.forEach((v, i) => {
    const py = yOf(v);
    yAxis.append(svg('line', { class: 'grid', x1: left, x2: left + plotW, y1: py, y2: py }));
    const text = svg('text', { x: left - 6, y: py + 4, 'text-anchor': 'end' });
    text.textContent = yLabels[i];
    yAxis.append(text);
  });
  root.append(yAxis);

  // Time axis.
  const xAxis = svg('g', { class: 'axis axis-x' });
  for (const { t, label } of timeTicks(start, end, Math.max(2, Math.floor(plotW / 110)))) {
    const px = xOf(t);
    xAxis.append(svg('line', { class: 'grid', x1: px, x2: px, y1: MARGIN.top, y2: MARGIN.top + plotH }));
    const text = svg('text', { x: px, y: MARGIN.top + plotH + 18, 'text-anchor': 'middle' });
    text.textContent = label;
    xAxis.append(text);
  }
  xAxis.append(svg('line', {
    class: 'axis-line', x1: left, x2: left + plotW, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH,
  }));
  root.append(xAxis);

  // One path per series; a gap longer than 1.5 steps or a non-finite value
  // starts a new segment instead of joining across missing data.
  const lines = svg('g', { class: 'lines' });
  const gap = step * 1000 * 1.5;
  series.forEach((s, i) => {
    const segments = [];
    let seg = null;
    let prevT = null;
    for (const [t, v] of s.points) {
      if (!isFinite(v)) {
        prevT = null;
        continue;
      }
      if (prevT === null || t - prevT > gap) {
        seg = [];
        segments.push(seg);
      }
      seg.push(`${xOf(t).toFixed(1)},${yOf(v).toFixed(1)}`);
      prevT = t;
    }
    // An isolated point gets a tiny stroke so that it stays visible.
    const d = segments
      .map((pts) => (pts.length === 1 ? `M${pts[0]}h0.5` : `M${pts.join('L')}`))
      .join('');
    const path = svg('path', {
      class: 'series-line',
      d,
      stroke: s.color,
      'data-series-index': i,
    });
    if (s.hidden) path.setAttribute('visibility', 'hidden');
    const title = svg('title');
    title.textContent = s.name;
    path.append(title);
    lines.append(path);
  });
  root.append(lines);

  // Crosshair and hover overlay.
  const cross = svg('line', { class: 'crosshair', y1: MARGIN.top, y2: MARGIN.top + plotH, visibility: 'hidden' });
  const dot = svg('circle', { class: 'hover-dot', r: 4, visibility: 'hidden' });
  const overlay = svg('rect', { class: 'overlay', x: left, y: MARGIN.top, width: plotW, height: plotH, fill: 'transparent' });
  root.append(cross, dot, overlay);

  const tooltip = el('div', { class: 'chart-tooltip', hidden: true });
  overlay.addEventListener('mousemove', (ev) => {
    const box = root.getBoundingClientRect();
    const mx = ev.clientX - box.left;
    const my = ev.clientY - box.top;
    const tm = start + ((mx - left) / plotW) * (end - start);
    const hits = [];
    for (const s of visible) {
      if (s.points.length === 0) continue;
      const p = s.points[nearestIndex(s.points, tm)];
      if (Math.abs(p[0] - tm) <= Math.max(step * 1000, (end - start) / plotW * 4)) hits.push({ s, p });
    }
    if (hits.length === 0) {
      cross.setAttribute('visibility', 'hidden');
      dot.setAttribute('visibility', 'hidden');
      tooltip.hidden = true;
      return;
    }
    // Snap to the time of the point nearest the mouse, highlight the
    // series whose value there is nearest the mouse's height.
    const snapT = hits.reduce((a, h) => (Math.abs(h.p[0] - tm) < Math.abs(a - tm) ? h.p[0] : a), hits[0].p[0]);
    const atT = hits.filter((h) => h.p[0] === snapT);
    let best = atT[0];
    for (const h of atT) {
      if (isFinite(h.p[1]) && Math.abs(yOf(h.p[1]) - my) < Math.abs(yOf(best.p[1]) - my)) best = h;
    }
    const px = xOf(snapT);
    cross.setAttribute('x1', px);
    cross.setAttribute('x2', px);
    cross.setAttribute('visibility', 'visible');
    if (isFinite(best.p[1])) {
      dot.setAttribute('cx', px);
      dot.setAttribute('cy', yOf(best.p[1]));
      dot.setAttribute('fill', best.s.color);
      dot.setAttribute('visibility', 'visible');
    }
    const rows = atT.slice().sort((a, b) => b.p[1] - a.p[1]).slice(0, 12);
    tooltip.replaceChildren(el('div', {},
      el('div', { class: 'tooltip-time' }, formatLocalTime(snapT, true)),
      ...rows.map((h) => el('div', { class: h === best ? 'tooltip-row tooltip-best' : 'tooltip-row' },
        el('span', { class: 'legend-swatch', style: `background:${h.s.color}` }),
        el('span', { class: 'tooltip-value' }, String(h.p[1])),
        el('span', { class: 'tooltip-name' }, h.s.name))),
      atT.length > rows.length ? el('div', { class: 'tooltip-more' }, `… ${atT.length - rows.length} more`) : null));
    tooltip.hidden = false;
    const tx = px + 16 + 360 > width ? Math.max(0, px - 16 - 360) : px + 16;
    tooltip.style.left = `${tx}px`;
    tooltip.style.top = `${Math.min(my + 10, HEIGHT - 40)}px`;
  });
  overlay.addEventListener('mouseleave', () => {
    cross.setAttribute('visibility', 'hidden');
    dot.setAttribute('visibility', 'hidden');
    tooltip.hidden = true;
  });

  container.replaceChildren(root, tooltip);
}
