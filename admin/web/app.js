// mtai admin dashboard: signs in with /api/v1/auth/login, draws what
// /api/v1/admin/stats and /api/v1/admin/usage answer (inline SVG, no
// library), and manages tenants' limits and API keys through /api/v1.
// No build step; served from the binary (admin/web, go:embed).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const HOUR = 3600e3;
  const PERIODS = { '24h': 24 * HOUR, '7d': 7 * 24 * HOUR, '30d': 30 * 24 * HOUR, '90d': 90 * 24 * HOUR };
  const COLORS = ['#3867d6', '#20bf6b', '#f7b731', '#eb3b5a', '#8854d0', '#0fb9b1', '#fa8231', '#4b6584'];
  const LIVE_MS = 15000;

  const state = {
    token: null, tenant: null, role: null, username: null,
    ownTenantId: null, tenants: [], timer: null, loading: false, revokeArmed: null,
    editingKey: null, // the API key whose edit form is open
  };

  // ---- session ------------------------------------------------------------

  function claims(token) {
    try {
      const b = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(b + '='.repeat((4 - (b.length % 4)) % 4)));
    } catch { return {}; }
  }

  function saveSession() {
    sessionStorage.setItem('mtai.admin', JSON.stringify({ token: state.token, tenant: state.tenant, username: state.username }));
  }

  function restoreSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem('mtai.admin') || 'null');
      if (!s || !s.token) return false;
      const c = claims(s.token);
      if (!c.exp || c.exp * 1000 < Date.now()) return false;
      Object.assign(state, { token: s.token, tenant: s.tenant, username: s.username, role: c.role });
      return true;
    } catch { return false; }
  }

  // APIError is an answer of the API other than 2xx: its status and the
  // message and param (the field at fault, if any) of its OpenAI-shaped body.
  class APIError extends Error {
    constructor(status, message, param) { super(message); this.status = status; this.param = param || ''; }
  }

  async function api(path, { method = 'GET', body } = {}) {
    const headers = { 'X-Tenant-ID': state.tenant };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 204) return null;
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      if (r.status === 401 && state.token) signOut('Your session ended: sign in again.');
      const err = data.error || {};
      throw new APIError(r.status, err.message || `HTTP ${r.status}`, err.param);
    }
    return data;
  }

  async function signIn(ev) {
    ev.preventDefault();
    $('signin-error').textContent = '';
    const tenant = $('si-tenant').value.trim();
    const username = $('si-user').value.trim();
    try {
      state.tenant = tenant;
      state.token = null;
      const r = await api('/api/v1/auth/login', { method: 'POST', body: { username, password: $('si-pass').value } });
      const c = claims(r.access_token);
      if (c.role !== 'platform_admin' && c.role !== 'tenant_admin') {
        throw new Error('This dashboard is for platform and tenant admins.');
      }
      Object.assign(state, { token: r.access_token, role: c.role, username });
      $('si-pass').value = '';
      saveSession();
      await start();
    } catch (e) {
      state.token = null;
      $('signin-error').textContent = e.message;
    }
  }

  function signOut(message) {
    sessionStorage.removeItem('mtai.admin');
    clearInterval(state.timer);
    Object.assign(state, { token: null, role: null, ownTenantId: null, tenants: [], revokeArmed: null });
    closeKeyEdit(false);
    $('app').hidden = true;
    $('controls').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
  }

  async function start() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('controls').hidden = false;
    $('whoami').textContent = `${state.username} @ ${state.tenant} (${state.role === 'platform_admin' ? 'platform admin' : 'tenant admin'})`;
    $('tenant-filter-label').hidden = state.role !== 'platform_admin';
    await refresh();
    setLive();
  }

  function setLive() {
    clearInterval(state.timer);
    if ($('live').checked) {
      state.timer = setInterval(() => { if (!document.hidden) refresh(); }, LIVE_MS);
    }
  }

  // ---- queries ------------------------------------------------------------

  function period() {
    const to = Math.ceil(Date.now() / HOUR) * HOUR;
    const span = PERIODS[$('period').value] || PERIODS['24h'];
    return { from: new Date(to - span), to: new Date(to), bucket: span <= 72 * HOUR ? 'hour' : 'day' };
  }

  function query(extra) {
    const p = period();
    const q = new URLSearchParams({ from: p.from.toISOString(), to: p.to.toISOString() });
    const t = selectedTenant();
    if (t) q.set('tenant', t);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    return q.toString();
  }

  function selectedTenant() {
    return state.role === 'platform_admin' ? $('tenant-filter').value : '';
  }

  // keysTenant is the tenant whose keys the keys panel shows.
  function keysTenant() {
    return selectedTenant() || state.tenant;
  }

  async function refresh() {
    if (state.loading || !state.token) return;
    state.loading = true;
    $('status').textContent = 'Loading…';
    try {
      const p = period();
      const platform = state.role === 'platform_admin';
      const [stats, series, byTenant, byModel, keys] = await Promise.all([
        api('/api/v1/admin/stats?' + query()),
        api('/api/v1/admin/usage?' + query({ bucket: p.bucket })),
        platform ? api('/api/v1/admin/usage?' + query({ bucket: 'none', group_by: 'tenant' })) : null,
        api('/api/v1/admin/usage?' + query({ bucket: 'none', group_by: 'model' })),
        api('/api/v1/admin/usage?' + query({ group_by: 'key', limit: '10' })),
      ]);
      if (stats.tenant_id && !platform) state.ownTenantId = stats.tenant_id;
      renderStats(stats);
      renderCharts(series.data, p);
      renderBreakdown($('by-tenant'), byTenant ? byTenant.data : [{ tenant: state.tenant, ...stats }], 'tenant');
      renderBreakdown($('by-model'), byModel.data, 'model');
      renderKeys(keys.data);
      renderLatency(byModel.data);
      $('csv').href = '/api/v1/admin/usage?' + query({ bucket: p.bucket, group_by: 'tenant,model', format: 'csv' });
      await Promise.all([loadTenants(), loadKeys()]);
      $('status').textContent = `Updated ${new Date().toLocaleTimeString()} · ${fmtTime(p.from)} – ${fmtTime(p.to)} (UTC)`;
    } catch (e) {
      $('status').textContent = 'Could not load: ' + e.message;
    } finally {
      state.loading = false;
    }
  }

  // ---- formatting ---------------------------------------------------------

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => nf.format(n || 0);
  const fmtUSD = (v) => '$' + (v >= 100 ? v.toFixed(2) : String(Number((v || 0).toFixed(4))));
  const fmtPct = (v) => (100 * (v || 0)).toFixed(1) + '%';
  const fmtMS = (v) => (v === null || v === undefined ? '–' : v >= 1000 ? (v / 1000) + ' s' : v + ' ms');
  const fmtTime = (d) => d.toISOString().slice(0, 16).replace('T', ' ');
  const compact = (v) => {
    const a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toFixed(1) + 'G';
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + 'M';
    if (a >= 1e3) return +(v / 1e3).toFixed(1) + 'k';
    return String(+v.toFixed(4));
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP, unlike style=""
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c));
    return e;
  }

  // ---- rendering ----------------------------------------------------------

  function renderStats(s) {
    $('kpi-requests').textContent = fmtInt(s.requests);
    $('kpi-tokens').textContent = fmtInt(s.total_tokens);
    $('kpi-tokens-split').textContent = `${fmtInt(s.prompt_tokens)} in · ${fmtInt(s.completion_tokens)} out`;
    $('kpi-cost').textContent = fmtUSD(s.cost_usd);
    $('kpi-errors').textContent = fmtPct(s.error_rate);
    $('kpi-errors-n').textContent = `${fmtInt(s.errors)} failed`;
    $('kpi-latency').textContent = `${fmtMS(s.latency_p50_ms)} / ${fmtMS(s.latency_p95_ms)}`;
    $('kpi-latency-avg').textContent = s.requests ? `mean ${Math.round(s.latency_avg_ms)} ms` : '';
    $('kpi-counts').textContent = `${fmtInt(s.tenants)} · ${fmtInt(s.users)} · ${fmtInt(s.keys)}`;
  }

  // buckets returns every bucket start of the period, so that quiet hours
  // show as zero rather than being skipped.
  function buckets(p) {
    const step = p.bucket === 'hour' ? HOUR : 24 * HOUR;
    let t = p.bucket === 'hour' ? p.from.getTime() : Math.floor(p.from.getTime() / (24 * HOUR)) * 24 * HOUR;
    const out = [];
    for (; t < p.to.getTime(); t += step) out.push(t);
    return out;
  }

  function renderCharts(rows, p) {
    const at = new Map(rows.map((r) => [Date.parse(r.time), r]));
    const xs = buckets(p);
    const pick = (f) => xs.map((t) => (at.has(t) ? f(at.get(t)) : 0));
    const label = (t) => {
      const d = new Date(t);
      return p.bucket === 'hour' ? d.toISOString().slice(11, 16) : d.toISOString().slice(5, 10);
    };
    chart($('chart-requests'), xs, [{ name: 'requests', color: COLORS[0], values: pick((r) => r.requests) }], 'bar', label);
    chart($('chart-tokens'), xs, [
      { name: 'prompt', color: COLORS[0], values: pick((r) => r.prompt_tokens) },
      { name: 'completion', color: COLORS[1], values: pick((r) => r.completion_tokens) },
    ], 'line', label);
    chart($('chart-cost'), xs, [{ name: 'cost', color: COLORS[4], values: pick((r) => r.cost_usd) }], 'line', label);
    chart($('chart-errors'), xs, [{ name: 'errors', color: COLORS[3], values: pick((r) => r.errors) }], 'bar', label);
    $('chart-requests').dataset.total = String(rows.reduce((a, r) => a + r.requests, 0));
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  // chart draws series (same length as xs) as bars or lines in box.
  function chart(box, xs, series, kind, label) {
    const W = 420, H = 200, L = 40, R = 6, T = 10, B = 22;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
    const max = Math.max(0, ...series.flatMap((s) => s.values));
    const n = xs.length || 1;
    const x = (i) => L + ((W - L - R) * (i + 0.5)) / n;
    const y = (v) => H - B - ((H - T - B) * v) / (max || 1);
    root.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    for (const f of [0.5, 1]) {
      const v = max * f;
      root.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: y(v), y2: y(v), 'stroke-dasharray': '2 3' }));
      const t = svg('text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' });
      t.textContent = compact(v);
      root.append(t);
    }
    const every = Math.max(1, Math.ceil(n / 6));
    xs.forEach((t, i) => {
      if (i % every) return;
      const tx = svg('text', { x: x(i), y: H - 6, 'text-anchor': 'middle' });
      tx.textContent = label(t);
      root.append(tx);
    });
    if (max === 0) {
      const t = svg('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' });
      t.textContent = 'No usage in this period';
      root.append(t);
    }
    const bw = Math.max(1, ((W - L - R) / n) * (0.8 / series.length));
    series.forEach((s, si) => {
      if (kind === 'bar') {
        s.values.forEach((v, i) => {
          if (!v) return;
          const r = svg('rect', {
            x: x(i) - (bw * series.length) / 2 + si * bw, y: y(v), width: bw, height: H - B - y(v), fill: s.color,
          });
          const tip = svg('title');
          tip.textContent = `${label(xs[i])}: ${s.name} ${compact(v)}`;
          r.append(tip);
          root.append(r);
        });
      } else {
        const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
        root.append(svg('polyline', { points: pts, fill: 'none', stroke: s.color, 'stroke-width': 2 }));
        s.values.forEach((v, i) => {
          if (!v) return;
          const c = svg('circle', { cx: x(i), cy: y(v), r: 2.5, fill: s.color });
          const tip = svg('title');
          tip.textContent = `${label(xs[i])}: ${s.name} ${compact(v)}`;
          c.append(tip);
          root.append(c);
        });
      }
    });
    box.replaceChildren(root);
    if (series.length > 1) {
      box.append(el('div', { class: 'muted' }, ...series.map((s) =>
        el('span', {}, el('span', { class: 'swatch', style: { background: s.color } }), s.name + ' '))));
    }
  }

  function renderBreakdown(table, rows, key) {
    const max = Math.max(1, ...rows.map((r) => r.requests));
    const sorted = [...rows].sort((a, b) => b.requests - a.requests || b.cost_usd - a.cost_usd);
    table.replaceChildren(el('tr', {},
      el('th', {}, key === 'tenant' ? 'Tenant' : 'Model'), el('th', { class: 'barcell' }),
      el('th', { class: 'n' }, 'Requests'), el('th', { class: 'n' }, 'Tokens'), el('th', { class: 'n' }, 'Cost'),
      el('th', { class: 'n' }, 'Errors')));
    sorted.forEach((r, i) => {
      table.append(el('tr', { 'data-name': r[key] },
        el('td', {}, el('span', { class: 'swatch', style: { background: COLORS[i % COLORS.length] } }), r[key]),
        el('td', { class: 'barcell' }, el('div', { class: 'hbar', style: { width: `${(100 * r.requests) / max}%`, background: COLORS[i % COLORS.length] } })),
        el('td', { class: 'n' }, fmtInt(r.requests)), el('td', { class: 'n' }, fmtInt(r.total_tokens)),
        el('td', { class: 'n' }, fmtUSD(r.cost_usd)), el('td', { class: 'n' }, fmtPct(r.error_rate))));
    });
    if (!rows.length || (rows.length === 1 && !rows[0].requests)) {
      table.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No usage in this period.')));
    }
  }

  function renderKeys(rows) {
    const t = $('top-keys');
    t.replaceChildren(el('tr', {}, el('th', {}, 'Key'), el('th', {}, 'Tenant'), el('th', { class: 'n' }, 'Requests'),
      el('th', { class: 'n' }, 'Tokens'), el('th', { class: 'n' }, 'Cost')));
    for (const r of rows) {
      t.append(el('tr', { 'data-name': r.key_name },
        el('td', {}, r.key_id ? `${r.key_name} (${r.key_prefix}…)` : '(no key)'), el('td', {}, r.tenant),
        el('td', { class: 'n' }, fmtInt(r.requests)), el('td', { class: 'n' }, fmtInt(r.total_tokens)),
        el('td', { class: 'n' }, fmtUSD(r.cost_usd))));
    }
    if (!rows.length) t.append(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No usage in this period.')));
  }

  function renderLatency(rows) {
    const t = $('latency');
    t.replaceChildren(el('tr', {}, el('th', {}, 'Model'), el('th', { class: 'n' }, 'Mean'), el('th', { class: 'n' }, 'p50 ≤'),
      el('th', { class: 'n' }, 'p95 ≤'), el('th', { class: 'n' }, 'p99 ≤'), el('th', { class: 'n' }, 'Error rate')));
    for (const r of rows) {
      t.append(el('tr', {}, el('td', {}, r.model), el('td', { class: 'n' }, `${Math.round(r.latency_avg_ms)} ms`),
        el('td', { class: 'n' }, fmtMS(r.latency_p50_ms)), el('td', { class: 'n' }, fmtMS(r.latency_p95_ms)),
        el('td', { class: 'n' }, fmtMS(r.latency_p99_ms)), el('td', { class: 'n' }, fmtPct(r.error_rate))));
    }
    if (!rows.length) t.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No usage in this period.')));
  }

  // ---- tenants ------------------------------------------------------------

  async function loadTenants() {
    let tenants;
    if (state.role === 'platform_admin') {
      tenants = (await api('/api/v1/tenants/?limit=1000')).data;
      const sel = $('tenant-filter');
      const cur = sel.value;
      sel.replaceChildren(el('option', { value: '' }, 'All tenants'),
        ...tenants.filter((t) => !t.disabled).map((t) => el('option', { value: t.name }, t.name)));
      sel.value = cur;
    } else if (state.ownTenantId) {
      tenants = [await api('/api/v1/tenants/' + state.ownTenantId)];
    } else {
      tenants = [];
    }
    state.tenants = tenants;
    const table = $('tenants');
    const edit = state.role === 'platform_admin';
    table.replaceChildren(el('tr', {}, el('th', {}, 'Tenant'), el('th', { class: 'n' }, 'Req/min'), el('th', { class: 'n' }, 'Req/hour'),
      el('th', { class: 'n' }, 'Tokens/min'), el('th', { class: 'n' }, 'Budget/month'), el('th', {})));
    const lim = (v) => (v ? fmtInt(v) : '∞');
    for (const t of tenants) {
      table.append(el('tr', { 'data-name': t.name, class: t.disabled ? 'revoked' : '' },
        el('td', {}, t.display_name ? `${t.name} · ${t.display_name}` : t.name),
        el('td', { class: 'n' }, lim(t.requests_per_minute)), el('td', { class: 'n' }, lim(t.requests_per_hour)),
        el('td', { class: 'n' }, lim(t.tokens_per_minute)), el('td', { class: 'n' }, t.monthly_budget_usd ? fmtUSD(t.monthly_budget_usd) : '∞'),
        el('td', {}, edit && !t.disabled ? el('button', { type: 'button', class: 'quiet', onclick: () => editLimits(t) }, 'Edit limits') : '')));
    }
  }

  let editing = null;
  function editLimits(t) {
    editing = t;
    $('limits-name').textContent = t.name;
    $('lim-rpm').value = t.requests_per_minute;
    $('lim-rph').value = t.requests_per_hour;
    $('lim-tpm').value = t.tokens_per_minute;
    $('lim-budget').value = t.monthly_budget_usd;
    $('limits-msg').textContent = '';
    $('limits-form').hidden = false;
  }

  async function saveLimits(ev) {
    ev.preventDefault();
    if (!editing) return;
    const n = (id) => Number($(id).value || 0);
    try {
      const t = await api('/api/v1/tenants/' + editing.id, {
        method: 'PATCH',
        body: {
          requests_per_minute: n('lim-rpm'), requests_per_hour: n('lim-rph'),
          tokens_per_minute: n('lim-tpm'), monthly_budget_usd: n('lim-budget'),
        },
      });
      await loadTenants();
      $('limits-msg').textContent = `Saved the limits of ${t.name}.`;
    } catch (e) {
      $('limits-msg').textContent = e.message;
    }
  }

  // ---- keys ---------------------------------------------------------------

  // KEY_LIMITS are an API key's own rate limits: the API's field, the
  // unit shown in the keys table, and the inputs of the create and edit
  // forms.
  const KEY_LIMITS = [
    { field: 'requests_per_minute', unit: 'rpm', long: 'requests per minute', create: 'key-rpm', edit: 'ke-rpm' },
    { field: 'requests_per_hour', unit: 'rph', long: 'requests per hour', create: 'key-rph', edit: 'ke-rph' },
    { field: 'tokens_per_minute', unit: 'tpm', long: 'tokens per minute', create: 'key-tpm', edit: 'ke-tpm' },
  ];

  // keyLimitsCell shows a key's own limits ("60 rpm · 100k tpm"), or that
  // only its tenant's apply.
  function keyLimitsCell(k) {
    const set = KEY_LIMITS.filter((l) => k[l.field] > 0);
    if (!set.length) return el('td', { class: 'muted' }, 'tenant limits only');
    const td = el('td', { title: set.map((l) => `${fmtInt(k[l.field])} ${l.long}`).join(', ') });
    set.forEach((l, i) => td.append(i ? ' · ' : '', compact(k[l.field]) + ' ', el('abbr', { title: l.long }, l.unit)));
    return td;
  }

  // limitsBody reads a form's limit inputs (ids under key 'create' or
  // 'edit' of KEY_LIMITS) as the API's fields; empty is 0 (no limit).
  function limitsBody(form) {
    const body = {};
    for (const l of KEY_LIMITS) {
      const v = $(l[form]).value.trim();
      body[l.field] = v === '' ? 0 : Number(v);
    }
    return body;
  }

  // clearInvalid undoes showError's marks on the inputs of form.
  function clearInvalid(form) {
    for (const i of $(form).querySelectorAll('[aria-invalid]')) {
      i.removeAttribute('aria-invalid');
      i.removeAttribute('aria-describedby');
    }
  }

  // showError puts e's message in box (an alert) and, when the API named
  // the field at fault (param, e.g. "requests_per_minute"; of a nested
  // path, the last name), marks that input invalid and moves the focus to
  // it. inputs maps the API's field names to input ids.
  function showError(box, what, e, inputs) {
    $(box).textContent = `${what} — ${e.message}`;
    const id = inputs[e.param && e.param.split('.').pop()];
    if (!id) return;
    $(id).setAttribute('aria-invalid', 'true');
    $(id).setAttribute('aria-describedby', box);
    $(id).focus();
  }

  const createInputs = { name: 'key-name', ...Object.fromEntries(KEY_LIMITS.map((l) => [l.field, l.create])) };
  const editInputs = { name: 'ke-name', ...Object.fromEntries(KEY_LIMITS.map((l) => [l.field, l.edit])) };

  async function loadKeys() {
    const tenant = keysTenant();
    $('keys-tenant').textContent = `of ${tenant}`;
    const keys = (await api('/api/v1/keys?limit=1000&tenant=' + encodeURIComponent(tenant))).data;
    const table = $('keys');
    table.replaceChildren(el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Prefix'), el('th', {}, 'Own limits'),
      el('th', {}, 'Created'), el('th', {}, 'Last used'), el('th', {})));
    for (const k of keys) {
      const armed = state.revokeArmed === k.id;
      table.append(el('tr', { 'data-key-id': String(k.id), 'data-name': k.name, class: k.revoked ? 'revoked' : '' },
        el('td', {}, k.name), el('td', {}, el('code', {}, k.prefix + '…')), keyLimitsCell(k),
        el('td', {}, fmtTime(new Date(k.created_at))), el('td', {}, k.last_used_at ? fmtTime(new Date(k.last_used_at)) : '–'),
        el('td', { class: 'actions' }, ...(k.revoked ? ['revoked'] : [
          el('button', { type: 'button', class: 'quiet', 'data-edit': String(k.id), 'aria-label': `Edit key ${k.name}`, onclick: () => editKey(k) }, 'Edit'),
          el('button', {
            type: 'button', class: armed ? 'danger' : 'quiet', 'aria-label': `${armed ? 'Confirm revoke of' : 'Revoke'} key ${k.name}`,
            onclick: () => revokeKey(k),
          }, armed ? 'Confirm revoke' : 'Revoke'),
        ]))));
    }
    if (!keys.length) table.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No keys.')));
    // The key being edited is gone (revoked, or another tenant's keys are shown).
    if (state.editingKey && !keys.some((k) => k.id === state.editingKey.id && !k.revoked)) {
      closeKeyEdit(false);
    }
  }

  async function createKey(ev) {
    ev.preventDefault();
    $('keys-msg').textContent = '';
    $('keys-status').textContent = '';
    clearInvalid('key-form');
    try {
      const k = await api('/api/v1/keys', {
        method: 'POST', body: { name: $('key-name').value.trim(), tenant: keysTenant(), ...limitsBody('create') },
      });
      $('key-form').reset();
      $('new-key-value').textContent = k.key;
      $('new-key').hidden = false;
      await loadKeys();
    } catch (e) {
      showError('keys-msg', 'Could not create the key', e, createInputs);
    }
  }

  function editKey(k) {
    state.editingKey = k;
    clearInvalid('key-edit');
    $('key-edit-error').textContent = '';
    $('keys-status').textContent = '';
    $('key-edit-name').textContent = k.name;
    $('ke-name').value = k.name;
    for (const l of KEY_LIMITS) $(l.edit).value = k[l.field] ? String(k[l.field]) : '';
    $('key-edit').hidden = false;
    $('ke-name').focus();
  }

  // closeKeyEdit hides the edit form and, when asked, gives the focus back
  // to the Edit button of the key's row.
  function closeKeyEdit(refocus) {
    const k = state.editingKey;
    state.editingKey = null;
    $('key-edit').hidden = true;
    $('key-edit-error').textContent = '';
    clearInvalid('key-edit');
    if (refocus && k) focusEditButton(k.id);
  }

  function focusEditButton(id) {
    const button = $('keys').querySelector(`button[data-edit="${id}"]`);
    if (button) button.focus();
  }

  // saveKey sends the edit form as PATCH /api/v1/keys/{id}: the name and
  // all three limits (empty is 0, which removes a limit).
  async function saveKey(ev) {
    ev.preventDefault();
    const k = state.editingKey;
    if (!k) return;
    $('key-edit-error').textContent = '';
    clearInvalid('key-edit');
    let saved;
    try {
      saved = await api('/api/v1/keys/' + k.id + '?tenant=' + encodeURIComponent(keysTenant()), {
        method: 'PATCH', body: { name: $('ke-name').value.trim(), ...limitsBody('edit') },
      });
    } catch (e) {
      showError('key-edit-error', `Could not save key ${k.name}`, e, editInputs);
      return;
    }
    closeKeyEdit(false);
    $('keys-status').textContent = `Saved key ${saved.name}: ${keyLimitsCell(saved).textContent}.`;
    try {
      await loadKeys();
    } catch (e) {
      $('keys-msg').textContent = e.message;
    }
    focusEditButton(saved.id);
  }

  async function revokeKey(k) {
    if (state.revokeArmed !== k.id) { // two clicks: no accidental revocation
      state.revokeArmed = k.id;
      await loadKeys();
      const again = $('keys').querySelector(`tr[data-key-id="${k.id}"] button.danger`);
      if (again) again.focus();
      return;
    }
    state.revokeArmed = null;
    try {
      await api('/api/v1/keys/' + k.id + '?tenant=' + encodeURIComponent(keysTenant()), { method: 'DELETE' });
      $('keys-msg').textContent = '';
    } catch (e) {
      $('keys-msg').textContent = e.message;
    }
    await loadKeys();
  }

  // ---- wiring -------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut());
    $('period').addEventListener('change', refresh);
    $('tenant-filter').addEventListener('change', refresh);
    $('live').addEventListener('change', setLive);
    $('limits-form').addEventListener('submit', saveLimits);
    $('limits-cancel').addEventListener('click', () => { $('limits-form').hidden = true; editing = null; });
    $('key-form').addEventListener('submit', createKey);
    $('key-edit').addEventListener('submit', saveKey);
    $('key-edit-cancel').addEventListener('click', () => closeKeyEdit(true));
    $('key-edit').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeKeyEdit(true); });
    $('new-key-done').addEventListener('click', () => { $('new-key').hidden = true; $('new-key-value').textContent = ''; });
    if (restoreSession()) start();
  });
})();
