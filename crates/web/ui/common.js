// Shared helpers of the pharos UI pages. Plain ES module, no dependencies.

/** Creates an element: el('div', {class: 'x', onclick: f}, child, 'text'). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      e.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      e.className = v;
    } else {
      e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/**
 * Calls an /api/v1 endpoint with form-encoded POST (GET for endpoints that
 * only accept GET) and returns `data`, or throws an Error carrying the
 * API's message. Warnings and infos are attached to the thrown/returned
 * object as `.warnings` / `.infos`.
 */
export async function api(path, params = {}, method = 'POST') {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => body.append(k, x));
    else if (v !== undefined && v !== null && v !== '') body.append(k, String(v));
  }
  let resp;
  try {
    resp = method === 'GET'
      ? await fetch(`api/v1/${path}?${body}`, { cache: 'no-store' })
      : await fetch(`api/v1/${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body,
      });
  } catch (e) {
    throw new Error(`network error: ${e.message}`);
  }
  const text = await resp.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${resp.status}: ${text.trim() || resp.statusText}`);
  }
  if (json.status !== 'success') {
    const err = new Error(json.error || `HTTP ${resp.status}`);
    err.errorType = json.errorType;
    throw err;
  }
  return { data: json.data, warnings: json.warnings || [], infos: json.infos || [] };
}

/** `name{a="b", c="d"}` for a label object. */
export function formatSeries(metric) {
  const name = metric.__name__ || '';
  const parts = Object.entries(metric)
    .filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  if (parts.length === 0) return name || '{}';
  return `${name}{${parts.join(', ')}}`;
}

const DURATION_UNITS = { y: 31536000, w: 604800, d: 86400, h: 3600, m: 60, s: 1, ms: 0.001 };

/** Seconds of a Prometheus duration (`1h30m`) or plain number; NaN if invalid. */
export function parseDuration(s) {
  s = String(s || '').trim();
  if (s === '') return NaN;
  if (/^[0-9]*\.?[0-9]+$/.test(s)) return Number(s);
  const re = /([0-9]+)(ms|y|w|d|h|m|s)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) return NaN;
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    pos = re.lastIndex;
  }
  return total;
}

/** A Prometheus-style duration string for a number of seconds. */
export function formatDuration(seconds) {
  let ms = Math.round(seconds * 1000);
  if (ms === 0) return '0s';
  let out = ms < 0 ? '-' : '';
  ms = Math.abs(ms);
  for (const [u, f] of [['y', 31536000000], ['w', 604800000], ['d', 86400000], ['h', 3600000], ['m', 60000], ['s', 1000], ['ms', 1]]) {
    if ((u === 'y' || u === 'w') && ms % f !== 0) continue;
    if (ms >= f) {
      out += `${Math.floor(ms / f)}${u}`;
      ms %= f;
    }
  }
  return out;
}

/** Short human duration for small values: `12.3ms`, `1.52s`, `3m4s`. */
export function humanDuration(seconds) {
  if (!isFinite(seconds)) return String(seconds);
  if (seconds < 1) return `${(seconds * 1000).toPrecision(3).replace(/\.?0+$/, '')}ms`;
  if (seconds < 60) return `${seconds.toPrecision(3).replace(/\.?0+$/, '')}s`;
  // Past an hour, minutes are precise enough.
  return formatDuration(seconds < 3600 ? Math.round(seconds) : Math.round(seconds / 60) * 60);
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** `YYYY-MM-DD HH:MM:SS` in local time (with `.mmm` when `ms`). */
export function formatLocalTime(date, ms = false) {
  const d = date instanceof Date ? date : new Date(date);
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return ms ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/**
 * Parses a time the user typed: empty or "now" gives null (meaning now),
 * RFC 3339, "YYYY-MM-DD HH:MM[:SS]" (UTC, as Prometheus's old UI wrote
 * g0.end_input), or Unix seconds. Returns milliseconds, null, or NaN.
 */
export function parseTimeInput(s) {
  s = String(s || '').trim();
  if (s === '' || s.toLowerCase() === 'now') return null;
  if (/^-?[0-9]+(\.[0-9]+)?$/.test(s)) return Number(s) * 1000;
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$/.exec(s);
  if (m) {
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0),
      m[7] ? Math.round(Number(`0.${m[7]}`) * 1000) : 0);
  }
  const t = Date.parse(s);
  return isNaN(t) ? NaN : t;
}

/** `YYYY-MM-DD HH:MM:SS` in UTC, the format of g0.end_input. */
export function formatUTCInput(ms) {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
