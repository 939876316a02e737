// The rules page: every group from /api/v1/rules with its rules, their
// health, last evaluation and error. Expressions link to the expression
// browser.

import { api, el, formatLocalTime } from '/assets/common.js';

const $ = (id) => document.getElementById(id);
let groups = [];

function queryLink(expr) {
  return `query?g0.expr=${encodeURIComponent(expr)}`;
}

function badges(obj) {
  return Object.entries(obj || {}).map(([k, v]) => el('span', { class: 'label-badge' }, `${k}="${v}"`));
}

function when(iso) {
  return iso.startsWith('0001-') ? 'never' : formatLocalTime(Date.parse(iso), true);
}

function render() {
  const needle = $('filter').value.trim().toLowerCase();
  let total = 0;
  let bad = 0;
  const out = [];
  for (const g of groups) {
    const rules = g.rules.filter((r) => !needle || `${r.name} ${r.query}`.toLowerCase().includes(needle));
    total += g.rules.length;
    bad += g.rules.filter((r) => r.health === 'err').length;
    if (rules.length === 0 && needle) continue;
    out.push(el('section', { class: 'pool', 'data-group': g.name },
      el('h2', { class: 'pool-header' }, `${g.name} `,
        el('span', { class: 'muted' }, `${g.file} · every ${g.interval}s · last ${when(g.lastEvaluation)} · took ${(g.evaluationTime * 1000).toFixed(3)}ms`)),
      el('table', { class: 'targets-table' },
        el('thead', {}, el('tr', {}, ['Rule', 'State', 'Error', 'Last evaluation', 'Evaluation time'].map((h) => el('th', {}, h)))),
        el('tbody', {}, rules.map((r) => el('tr', { class: 'rule-row', 'data-rule': r.name },
          el('td', {},
            el('div', {}, `${r.type === 'alerting' ? 'alert' : 'record'}: ${r.name}`),
            el('div', {}, 'expr: ', el('a', { class: 'expr-link', href: queryLink(r.query) }, r.query)),
            r.duration ? el('div', {}, `for: ${r.duration}s`) : null,
            Object.keys(r.labels || {}).length ? el('div', {}, 'labels: ', badges(r.labels)) : null,
            r.annotations && Object.keys(r.annotations).length ? el('div', {}, 'annotations: ', badges(r.annotations)) : null),
          el('td', {}, el('span', { class: `health health-${r.health === 'ok' ? 'up' : r.health === 'err' ? 'down' : 'unknown'}` }, r.health.toUpperCase())),
          el('td', { class: 'target-error' }, r.lastError || ''),
          el('td', {}, when(r.lastEvaluation)),
          el('td', {}, `${(r.evaluationTime * 1000).toFixed(3)}ms`)))))));
  }
  $('groups').replaceChildren(...out);
  $('summary').textContent = `${groups.length} groups, ${total} rules, ${bad} failing`;
}

async function load() {
  document.body.dataset.state = 'loading';
  try {
    const { data } = await api('rules', {}, 'GET');
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
load();
