// The alerts page: alerting rules from /api/v1/rules?type=alert, grouped
// by file and group, with their pending and firing alerts. Each rule's
// expression links to the expression browser.

import { api, el, formatLocalTime } from '/assets/common.js';

const $ = (id) => document.getElementById(id);
let groups = [];

function queryLink(expr) {
  return `query?g0.expr=${encodeURIComponent(expr)}`;
}

function badges(obj) {
  return Object.entries(obj || {}).map(([k, v]) => el('span', { class: 'label-badge' }, `${k}="${v}"`));
}

function render() {
  const states = new Set([...document.querySelectorAll('.state:checked')].map((c) => c.value));
  const needle = $('filter').value.trim().toLowerCase();
  const counts = { inactive: 0, pending: 0, firing: 0 };
  const out = [];
  for (const g of groups) {
    const rules = g.rules.filter((r) => {
      counts[r.state] = (counts[r.state] || 0) + 1;
      return states.has(r.state)
        && (!needle || `${r.name} ${JSON.stringify(r.labels)}`.toLowerCase().includes(needle));
    });
    if (rules.length === 0) continue;
    out.push(el('section', { class: 'pool' },
      el('h2', { class: 'pool-header' }, `${g.file} > ${g.name}`),
      rules.map((r) => el('details', { class: `alert-rule state-${r.state}`, 'data-alertname': r.name },
        el('summary', {},
          el('span', { class: `health health-${r.state === 'firing' ? 'down' : r.state === 'pending' ? 'unknown' : 'up'}` }, r.state.toUpperCase()),
          ` ${r.name} (${(r.alerts || []).length} active)`),
        el('div', { class: 'rule-def' },
          el('div', {}, 'expr: ', el('a', { class: 'expr-link', href: queryLink(r.query) }, r.query)),
          r.duration ? el('div', {}, `for: ${r.duration}s`) : null,
          r.keepFiringFor ? el('div', {}, `keep_firing_for: ${r.keepFiringFor}s`) : null,
          el('div', {}, 'labels: ', badges(r.labels)),
          el('div', {}, 'annotations: ', badges(r.annotations))),
        (r.alerts || []).length === 0 ? null : el('table', { class: 'targets-table' },
          el('thead', {}, el('tr', {}, ['Labels', 'State', 'Active since', 'Value', 'Annotations'].map((h) => el('th', {}, h)))),
          el('tbody', {}, r.alerts.map((a) => el('tr', { class: 'alert-row' },
            el('td', { class: 'labels' }, badges(a.labels)),
            el('td', {}, a.state.toUpperCase()),
            el('td', {}, formatLocalTime(Date.parse(a.activeAt), true)),
            el('td', {}, a.value),
            el('td', { class: 'labels' }, badges(a.annotations))))))))));
  }
  $('groups').replaceChildren(...out);
  $('summary').textContent = `${counts.firing} firing, ${counts.pending} pending, ${counts.inactive} inactive`;
}

async function load() {
  document.body.dataset.state = 'loading';
  try {
    const { data } = await api('rules', { type: 'alert' }, 'GET');
    groups = data.groups;
    $('error').hidden = true;
    render();
  } catch (e) {
    $('error').textContent = String(e.message || e);
    $('error').hidden = false;
  }
  document.body.dataset.state = 'idle';
}

$('refresh').addEventListener('click', load);
$('filter').addEventListener('input', render);
for (const c of document.querySelectorAll('.state')) c.addEventListener('change', render);
load();
