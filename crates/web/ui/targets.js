// The targets page: /api/v1/targets grouped by scrape pool.

import { api, el, humanDuration, formatLocalTime } from './common.js';

const $ = (id) => document.getElementById(id);
let targets = [];
let dropped = {};
const collapsed = new Set();

function ago(iso) {
  const t = Date.parse(iso);
  if (isNaN(t) || t <= 0 || iso.startsWith('0001-')) return 'never';
  const secs = Math.max(0, (Date.now() - t) / 1000);
  return `${humanDuration(secs)} ago`;
}

function labelBadges(labels) {
  return Object.entries(labels).map(([k, v]) => el('span', { class: 'label-badge' }, `${k}="${v}"`));
}

function render() {
  const onlyBad = $('unhealthy-only').checked;
  const needle = $('filter').value.trim().toLowerCase();
  const pools = new Map();
  for (const t of targets) {
    if (!pools.has(t.scrapePool)) pools.set(t.scrapePool, []);
    pools.get(t.scrapePool).push(t);
  }
  const sections = [];
  let up = 0;
  for (const t of targets) if (t.health === 'up') up += 1;
  for (const [pool, list] of [...pools.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const poolUp = list.filter((t) => t.health === 'up').length;
    const shown = list.filter((t) => (!onlyBad || t.health !== 'up')
      && (!needle || `${t.scrapeUrl} ${JSON.stringify(t.labels)}`.toLowerCase().includes(needle)));
    if (shown.length === 0 && (onlyBad || needle)) continue;
    const header = el('h2', {
      class: 'pool-header',
      onclick: () => {
        if (collapsed.has(pool)) collapsed.delete(pool);
        else collapsed.add(pool);
        render();
      },
    },
    el('span', { class: 'pool-toggle' }, collapsed.has(pool) ? '▸' : '▾'),
    ` ${pool} `,
    el('span', { class: poolUp === list.length ? 'count ok' : 'count bad' }, `(${poolUp}/${list.length} up)`),
    dropped[pool] ? el('span', { class: 'muted' }, ` · ${dropped[pool]} dropped`) : null);
    const table = collapsed.has(pool) ? null : el('table', { class: 'targets-table' },
      el('thead', {}, el('tr', {},
        ['Endpoint', 'State', 'Labels', 'Last scrape', 'Scrape duration', 'Error'].map((h) => el('th', {}, h)))),
      el('tbody', {}, shown.map((t) => el('tr', {},
        el('td', {}, el('a', { href: t.globalUrl || t.scrapeUrl }, t.scrapeUrl)),
        el('td', {}, el('span', { class: `health health-${t.health}` }, t.health.toUpperCase())),
        el('td', { class: 'labels' }, labelBadges(t.labels)),
        el('td', { title: t.lastScrape.startsWith('0001-') ? '' : formatLocalTime(Date.parse(t.lastScrape), true) }, ago(t.lastScrape)),
        el('td', {}, t.lastScrape.startsWith('0001-') ? '' : humanDuration(t.lastScrapeDuration)),
        el('td', { class: 'target-error' }, t.lastError)))));
    sections.push(el('section', { class: 'pool' }, header, table));
  }
  $('pools').replaceChildren(...(sections.length ? sections : [el('p', { class: 'muted' }, 'No targets.')]));
  $('summary').textContent = `${up}/${targets.length} targets up`;
}

async function load() {
  document.body.dataset.state = 'loading';
  try {
    const res = await api('targets', {}, 'GET');
    targets = res.data.activeTargets || [];
    dropped = res.data.droppedTargetCounts || {};
    $('error').hidden = true;
    render();
    document.body.dataset.state = 'done';
  } catch (e) {
    $('error').textContent = e.message;
    $('error').hidden = false;
    document.body.dataset.state = 'error';
  }
}

$('unhealthy-only').addEventListener('change', render);
$('filter').addEventListener('input', render);
$('refresh').addEventListener('click', load);
load();
