// The expression browser: instant queries as a table, range queries as our
// SVG chart. Understands Prometheus's URL parameters (g0.expr, g0.tab,
// g0.range_input, g0.end_input, g0.step_input, g0.moment_input) and
// writes them back when a query runs, so URLs can be shared.

import {
  api, el, formatSeries, parseDuration, formatDuration, parseTimeInput,
  formatUTCInput, formatLocalTime,
} from './common.js';
import { renderChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const RANGE_STEPS = ['1m', '5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w', '2w', '4w', '8w', '26w', '1y'];
const MAX_TABLE_ROWS = 10000;

let tab = 'table';
let seq = 0;

function readURL() {
  const q = new URLSearchParams(window.location.search);
  $('expr').value = q.get('g0.expr') || '';
  const t = q.get('g0.tab');
  // Prometheus 2's UI used 0 for the graph and 1 for the console (table).
  tab = t === 'graph' || t === '0' ? 'graph' : 'table';
  $('range').value = q.get('g0.range_input') || '1h';
  $('end').value = q.get('g0.end_input') || q.get('g0.end_time') || '';
  $('step').value = q.get('g0.step_input') || q.get('g0.res_step') || '';
  $('moment').value = q.get('g0.moment_input') || '';
  autosize();
}

function writeURL() {
  const q = new URLSearchParams();
  q.set('g0.expr', $('expr').value);
  q.set('g0.tab', tab);
  if (tab === 'graph') {
    q.set('g0.range_input', $('range').value.trim());
    if ($('end').value.trim()) q.set('g0.end_input', $('end').value.trim());
    if ($('step').value.trim()) q.set('g0.step_input', $('step').value.trim());
  } else if ($('moment').value.trim()) {
    q.set('g0.moment_input', $('moment').value.trim());
  }
  const url = `${window.location.pathname}?${q}`;
  if (url !== `${window.location.pathname}${window.location.search}`) {
    window.history.pushState(null, '', url);
  }
}

function showTab() {
  for (const b of document.querySelectorAll('.tab')) {
    b.classList.toggle('active', b.dataset.tab === tab);
    b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  }
  $('panel-table').hidden = tab !== 'table';
  $('panel-graph').hidden = tab !== 'graph';
}

function setError(msg) {
  $('error').textContent = msg || '';
  $('error').hidden = !msg;
}

function setNotes(warnings, infos) {
  const box = $('warnings');
  box.replaceChildren(
    ...warnings.map((w) => el('div', { class: 'warning' }, `Warning: ${w}`)),
    ...infos.map((i) => el('div', { class: 'info' }, `Info: ${i}`)),
  );
  box.hidden = warnings.length + infos.length === 0;
}

function autosize() {
  const t = $('expr');
  t.style.height = 'auto';
  t.style.height = `${t.scrollHeight + 2}px`;
}

async function execute() {
  const expr = $('expr').value.trim();
  const my = ++seq;
  setError('');
  setNotes([], []);
  $('stats').textContent = '';
  if (!expr) {
    $('table-out').replaceChildren(el('p', { class: 'muted' }, 'No query entered.'));
    return;
  }
  writeURL();
  document.body.dataset.state = 'loading';
  const began = performance.now();
  try {
    const res = tab === 'graph' ? await runGraph(expr) : await runTable(expr);
    if (my !== seq) return;
    setNotes(res.warnings, res.infos);
    $('stats').textContent = `Load time: ${Math.round(performance.now() - began)}ms · Result series: ${res.count}`;
    document.body.dataset.state = 'done';
  } catch (e) {
    if (my !== seq) return;
    setError(e.message);
    document.body.dataset.state = 'error';
  }
}

async function runTable(expr) {
  const moment = parseTimeInput($('moment').value);
  if (Number.isNaN(moment)) throw new Error(`Invalid evaluation time: ${$('moment').value}`);
  const params = { query: expr };
  if (moment !== null) params.time = moment / 1000;
  const res = await api('query', params);
  const { resultType, result } = res.data;
  const out = $('table-out');
  const rows = [];
  let count = 0;
  if (resultType === 'vector') {
    count = result.length;
    for (const s of result.slice(0, MAX_TABLE_ROWS)) {
      rows.push([formatSeries(s.metric), s.value[1]]);
    }
  } else if (resultType === 'matrix') {
    count = result.length;
    for (const s of result.slice(0, MAX_TABLE_ROWS)) {
      rows.push([formatSeries(s.metric), s.values.map(([t, v]) => `${v} @${t}`).join('\n')]);
    }
  } else if (resultType === 'scalar' || resultType === 'string') {
    count = 1;
    rows.push([resultType, result[1]]);
  }
  if (rows.length === 0) {
    out.replaceChildren(el('p', { class: 'muted' }, 'Empty query result'));
  } else {
    out.replaceChildren(...[
      el('table', { class: 'result-table', id: 'result-table' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Series'), el('th', { class: 'value' }, 'Value'))),
        el('tbody', {}, rows.map(([k, v]) => el('tr', {},
          el('td', { class: 'series' }, k), el('td', { class: 'value' }, v))))),
      count > rows.length ? el('p', { class: 'muted' }, `Showing ${rows.length} of ${count} series.`) : null,
    ].filter(Boolean));
  }
  return { count, warnings: res.warnings, infos: res.infos };
}

async function runGraph(expr) {
  const range = parseDuration($('range').value);
  if (!(range > 0)) throw new Error(`Invalid range: ${$('range').value}`);
  const endIn = parseTimeInput($('end').value);
  if (Number.isNaN(endIn)) throw new Error(`Invalid end time: ${$('end').value}`);
  const end = endIn === null ? Date.now() : endIn;
  let step = parseDuration($('step').value);
  if ($('step').value.trim() === '') {
    step = Math.max(1, Math.round(range / 250));
  } else if (!(step > 0)) {
    throw new Error(`Invalid resolution: ${$('step').value}`);
  }
  const start = end - range * 1000;
  const res = await api('query_range', {
    query: expr, start: start / 1000, end: end / 1000, step,
  });
  const { resultType, result } = res.data;
  if (resultType !== 'matrix') throw new Error(`Unexpected result type ${resultType} for a range query`);
  renderChart($('chart'), $('legend'), result, { start, end, step });
  return { count: result.length, warnings: res.warnings, infos: res.infos };
}

function shiftRange(dir) {
  const cur = parseDuration($('range').value) || 3600;
  const secs = RANGE_STEPS.map(parseDuration);
  let i = secs.findIndex((s) => s >= cur);
  if (i < 0) i = secs.length - 1;
  if (dir > 0 && secs[i] === cur) i += 1;
  if (dir < 0) i -= 1;
  i = Math.min(secs.length - 1, Math.max(0, i));
  $('range').value = formatDuration(secs[i]);
  execute();
}

function init() {
  readURL();
  showTab();
  $('query-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    execute();
  });
  $('expr').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      execute();
    }
  });
  $('expr').addEventListener('input', autosize);
  for (const b of document.querySelectorAll('.tab')) {
    b.addEventListener('click', () => {
      if (tab === b.dataset.tab) return;
      tab = b.dataset.tab;
      showTab();
      if ($('expr').value.trim()) execute();
    });
  }
  $('range-minus').addEventListener('click', () => shiftRange(-1));
  $('range-plus').addEventListener('click', () => shiftRange(1));
  for (const id of ['range', 'end', 'step', 'moment']) {
    $(id).addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        execute();
      }
    });
  }
  $('end').title = `Blank for now; RFC 3339, Unix seconds or "YYYY-MM-DD HH:MM:SS" (UTC). Now: ${formatUTCInput(Date.now())} UTC, ${formatLocalTime(Date.now())} local`;
  window.addEventListener('popstate', () => {
    readURL();
    showTab();
    if ($('expr').value.trim()) execute();
  });
  if ($('expr').value.trim()) execute();
  else $('expr').focus();
}

init();
