// The `mend demo` HTML report's script, embedded in the binary at build time
// (src/app/demo_html_assets.h.in); its contract is written there. ES2017, runs once at the end of
// <body>, and keeps no state after it.
(function () {
  'use strict';
  var SVGNS = 'http://www.w3.org/2000/svg';
  var W = 1000;  // every chart's viewBox width; the SVG scales to the page
  var errorsBox = document.getElementById('render-errors');
  function reportError(where, e) {
    var text = e && e.stack ? String(e.stack) : String(e);
    errorsBox.appendChild(document.createTextNode(where + ': ' + text + '\n'));
  }

  // ---- reading the data: any member may be missing or of another type --------------------
  function own(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function obj(v) { return isObj(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function ok(n) { return typeof n === 'number' && isFinite(n); }
  function num(v) { return ok(v) ? v : NaN; }
  function field(o, k) { return isObj(o) && own(o, k) ? o[k] : undefined; }
  function str(v) {
    if (typeof v === 'string') return v;
    if (ok(v) || typeof v === 'boolean') return String(v);
    return '';
  }
  function clamp01(x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
  function truncate(s, n) { return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; }
  function fix(v) { return Math.round(v * 10) / 10; }

  // ---- building the page: text goes in as text nodes, never as markup --------------------
  function add(parent, child) {
    if (child === null || child === undefined || child === false) return parent;
    if (Array.isArray(child)) {
      child.forEach(function (c) { add(parent, c); });
    } else {
      parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return parent;
  }
  function attrs(e, a) {
    if (a) {
      Object.keys(a).forEach(function (k) {
        if (a[k] !== undefined && a[k] !== null) e.setAttribute(k, String(a[k]));
      });
    }
    return e;
  }
  function h(tag, a, children) { return add(attrs(document.createElement(tag), a), children); }
  function s(tag, a, children) {
    return add(attrs(document.createElementNS(SVGNS, tag), a), children);
  }
  function tip(node, text) { node.appendChild(s('title', null, text)); return node; }

  // ---- vocabulary ------------------------------------------------------------------------
  var STATUSES = ['succeeded', 'succeeded_after_retry', 'fallback', 'degraded', 'failed', 'error',
                  'other'];
  var STATUS = {
    succeeded: ['succeeded', '#2f9e52'],
    succeeded_after_retry: ['succeeded after retry', '#17a2a0'],
    fallback: ['fallback', '#3d7fd9'], degraded: ['degraded', '#e5a823'],
    failed: ['failed', '#d94848'], error: ['error', '#8e1b1b'], other: ['other status', '#9aa1a9']
  };
  var CIRCUIT = {
    closed: ['closed', '#3fae5a'], half_open: ['half open', '#f2b630'], open: ['open', '#e04848'],
    isolated: ['isolated', '#8d949c'], unknown: ['unknown', '#d5d9de']
  };
  var HEALTH = {
    healthy: ['healthy', '#3fae5a'], degraded: ['degraded', '#f2b630'],
    unhealthy: ['unhealthy', '#e04848'], unknown: ['unknown', '#c5cad0']
  };
  var LEVEL = { critical: '#8e1b1b', high: '#d94848', medium: '#e5a823', low: '#8d949c' };
  var LIGHT = { '#e5a823': 1, '#f2b630': 1, '#d5d9de': 1, '#c5cad0': 1 };
  var CHAOS_COLOR = '#6f35d0', RESTART_COLOR = '#1d232b', HEAL_COLOR = '#17a2a0';
  var LAT_MIN = 0.001, LAT_MAX = 60, LAT_BINS = 24;  // log-scale latency bins, 1 ms .. 60 s

  function statusOf(task) {
    var st = str(task.status);
    return own(STATUS, st) && st !== 'other' ? st : 'other';
  }
  function known(table, state) { return state === '' ? '' : own(table, state) ? state : 'unknown'; }
  function chip(text, color) {
    return h('span', { 'class': LIGHT[color] ? 'chip light' : 'chip',
                       style: 'background:' + color }, text);
  }
  function stateChip(table, state) {
    var k = known(table, state);
    return k === '' ? '' : chip(k === 'unknown' ? state : table[k][0], table[k][1]);
  }

  // ---- numbers for people ------------------------------------------------------------------
  var DASH = '\u2013';
  function fmtInt(n) { return ok(n) ? Math.round(n).toLocaleString('en-US') : DASH; }
  function fmtPct(part, whole) { return whole > 0 ? (100 * part / whole).toFixed(1) + ' %' : DASH; }
  function fmtSeconds(t) {
    if (!ok(t)) return DASH;
    if (Math.abs(t) < 100) return t.toFixed(Math.abs(t) < 10 ? 2 : 1) + ' s';
    var r = Math.round(t), m = Math.floor(r / 60), sec = r % 60;
    if (m < 60) return m + ' min ' + sec + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  function fmtAt(t) { return ok(t) ? 't+' + fmtSeconds(t) : DASH; }
  function fmtLatency(v) {
    if (!ok(v)) return DASH;
    if (v < 0.001) return (v * 1e6).toFixed(0) + ' \u00b5s';
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : v < 0.1 ? 1 : 0) + ' ms';
    return v.toFixed(v < 10 ? 2 : 1) + ' s';
  }
  var TIME_STEPS = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900,
                    1800, 3600, 7200, 14400, 28800, 86400];
  var BUCKET_STEPS = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 10, 12, 15, 20, 30, 45,
                      60, 90, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200];
  function firstStep(steps, span, most) {
    for (var i = 0; i < steps.length; i++) {
      if (Math.ceil(span / steps[i] - 1e-9) <= most) return steps[i];
    }
    return span / most;
  }
  function fmtTick(v, step) {
    if (step >= 60) {
      var r = Math.round(v), m = Math.floor(r / 60), sec = r % 60;
      return m + ':' + (sec < 10 ? '0' : '') + sec;
    }
    var d = step >= 1 ? 0 : Math.abs(step * 10 - Math.round(step * 10)) < 1e-9 ? 1 : 2;
    return v.toFixed(d);
  }
  function countScale(max, most) {
    if (!(max > 0)) return { step: 1, top: 1 };
    var raw = max / most, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    var step = Math.max(1, (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p);
    return { step: step, top: Math.ceil(max / step - 1e-9) * step };
  }

  // ---- the model: the report read once, defensively -----------------------------------------
  function finishedAt(task) {
    var f = num(task.finished_s);
    if (ok(f)) return f;
    return num(task.submitted_s) + num(task.latency_s);
  }
  function latencyOf(task) {
    var v = num(task.latency_s);
    return ok(v) ? v : num(task.finished_s) - num(task.submitted_s);
  }
  function events(list) {
    var out = arr(list).filter(isObj).map(function (e, i) {
      return { t: num(e.t), agent: str(e.agent), raw: e, order: i };
    });
    out.sort(function (a, b) {  // by time, those without one last, stable
      var ta = ok(a.t) ? a.t : Infinity, tb = ok(b.t) ? b.t : Infinity;
      return ta === tb ? a.order - b.order : ta < tb ? -1 : 1;
    });
    return out;
  }
  function buildModel(R) {
    var M = {};
    M.tasks = arr(R.tasks).filter(isObj);
    M.samples = arr(R.samples).filter(function (x) { return isObj(x) && ok(x.t); });
    M.samples.sort(function (a, b) { return a.t - b.t; });
    M.chaos = events(R.chaos);
    M.chaos.forEach(function (e, i) { e.n = i + 1; });
    M.transitions = events(R.circuit_transitions);
    M.restarts = events(R.restarts);
    M.healing = events(R.healing);
    M.notifications = events(R.notifications);
    M.records = arr(R.records).filter(isObj);

    var maxT = 0;
    function see(t) { if (ok(t) && t > maxT) maxT = t; }
    M.tasks.forEach(function (t) { see(finishedAt(t)); });
    M.samples.forEach(function (x) { see(x.t); });
    [M.chaos, M.transitions, M.restarts, M.healing, M.notifications].forEach(function (list) {
      list.forEach(function (e) { see(e.t); });
    });
    var d = num(R.duration_s);
    M.duration = ok(d) && d > 0 ? d : 0;
    M.span = Math.max(M.duration, maxT);
    if (!(M.span > 0)) M.span = 1;

    M.outcomes = {};
    STATUSES.forEach(function (st) { M.outcomes[st] = 0; });
    var given = obj(R.outcomes), fromReport = false;
    Object.keys(given).forEach(function (k) {
      var c = num(given[k]);
      if (!ok(c) || c < 0) return;
      fromReport = true;
      var st = own(STATUS, k) && k !== 'other' ? k : 'other';
      M.outcomes[st] += c;
    });
    if (!fromReport) M.tasks.forEach(function (t) { M.outcomes[statusOf(t)] += 1; });
    M.outcomeTotal = STATUSES.reduce(function (a, st) { return a + M.outcomes[st]; }, 0);

    var names = [], seen = new Set();
    function name(n) { if (n !== '' && !seen.has(n)) { seen.add(n); names.push(n); } }
    arr(R.agents).forEach(function (n) { name(str(n)); });
    M.samples.forEach(function (x) { Object.keys(obj(x.agents)).forEach(name); });
    [M.chaos, M.transitions, M.restarts, M.healing].forEach(function (list) {
      list.forEach(function (e) { name(e.agent); });
    });
    M.agents = names;
    return M;
  }

  // ---- shared chart pieces -------------------------------------------------------------------
  function legend(fig, items) {
    var box = fig.querySelector('.legend');
    items.forEach(function (it) {
      if (it.group) { add(box, h('span', { 'class': 'group' }, it.group)); return; }
      var style = it.kind === 'dash' ? 'border-color:' + it.color : 'background:' + it.color;
      add(box, h('span', null, [h('span', { 'class': 'sw ' + (it.kind || ''), style: style }),
                                it.label]));
    });
  }
  function noData(fig, text) {
    add(fig.querySelector('.chart-body'), h('p', { 'class': 'no-data' }, text));
    return 0;
  }
  function note(fig, text) {
    add(fig.querySelector('.chart-body'), h('p', { 'class': 'note' }, text));
  }
  function chartSvg(height, label) {
    return s('svg', { viewBox: '0 0 ' + W + ' ' + height, 'class': 'chart', role: 'img',
                      'aria-label': label, preserveAspectRatio: 'xMidYMin meet' });
  }
  // A time axis under a plot from x0 to x1 covering [0, span] seconds.
  function timeAxis(svg, x0, x1, y, span) {
    var step = firstStep(TIME_STEPS, span, 12), g = s('g', { 'class': 'time-axis' });
    g.appendChild(s('line', { x1: x0, y1: y, x2: x1, y2: y, 'class': 'axis' }));
    for (var i = 0; i * step <= span + 1e-9; i++) {
      var t = i * step, x = fix(x0 + (x1 - x0) * t / span);
      g.appendChild(s('line', { x1: x, y1: y, x2: x, y2: y + 4, 'class': 'tick' }));
      g.appendChild(s('text', { x: x, y: y + 16, 'text-anchor': 'middle' }, fmtTick(t, step)));
    }
    g.appendChild(s('text', { x: (x0 + x1) / 2, y: y + 31, 'text-anchor': 'middle',
                              'class': 'axis-title' },
                    step >= 60 ? 'time since start (min:s)' : 'time since start (s)'));
    svg.appendChild(g);
  }
  // Horizontal grid lines and labels for counts 0..scale.top; ys maps a count to y.
  function countAxis(svg, x0, x1, ys, scale, title) {
    var g = s('g', { 'class': 'count-axis' });
    for (var v = 0; v <= scale.top + 1e-9; v += scale.step) {
      var y = fix(ys(v));
      g.appendChild(s('line', { x1: x0, y1: y, x2: x1, y2: y,
                                'class': v === 0 ? 'axis' : 'grid' }));
      g.appendChild(s('text', { x: x0 - 6, y: y + 4, 'text-anchor': 'end' }, fmtInt(v)));
    }
    var mid = (ys(0) + ys(scale.top)) / 2;
    g.appendChild(s('text', { x: 14, y: mid, 'text-anchor': 'middle', 'class': 'axis-title',
                              transform: 'rotate(-90 14 ' + fix(mid) + ')' }, title));
    svg.appendChild(g);
  }
  // Labels above a plot on up to `rows` rows, each on the first row where it does not overlap.
  function labelRows(rows) {
    var ends = [];
    for (var i = 0; i < rows; i++) ends.push(-Infinity);
    return function (x, width) {
      var best = 0;
      for (var r = 0; r < rows; r++) {
        if (ends[r] <= x) { best = r; break; }
        if (ends[r] < ends[best]) best = r;
      }
      ends[best] = x + width;
      return best;
    };
  }

  // ---- chart 1: outcomes over time -------------------------------------------------------------
  function drawOutcomes(fig, M) {
    var timed = [];
    M.tasks.forEach(function (t) {
      var f = finishedAt(t);
      if (ok(f) && f >= 0) timed.push({ t: f, status: statusOf(t) });
    });
    var untimed = M.tasks.length - timed.length;
    if (!timed.length) return noData(fig, 'No finished tasks with a time in this report.');
    var w = firstStep(BUCKET_STEPS, M.span, 60), n = Math.max(1, Math.ceil(M.span / w - 1e-9));
    fig.setAttribute('data-bucket-s', String(w));
    fig.setAttribute('data-buckets', String(n));
    var buckets = [], totals = [];
    for (var i = 0; i < n; i++) { buckets.push({}); totals.push(0); }
    timed.forEach(function (x) {
      var b = Math.min(n - 1, Math.floor(x.t / w));
      buckets[b][x.status] = (buckets[b][x.status] || 0) + 1;
      totals[b] += 1;
    });
    var shown = n * w;
    var H = 330, m = { l: 56, r: 16, t: 50, b: 42 }, pw = W - m.l - m.r, ph = H - m.t - m.b;
    var scale = countScale(Math.max.apply(null, totals), 5);
    function ys(v) { return m.t + ph - ph * v / scale.top; }
    function xs(t) { return m.l + pw * clamp01(t / shown); }
    var svg = chartSvg(H, 'Tasks finished per ' + w + ' s, by status');
    countAxis(svg, m.l, W - m.r, ys, scale, 'tasks per ' + w + ' s');
    timeAxis(svg, m.l, W - m.r, m.t + ph, shown);

    var marks = 0, present = {}, bw = pw / n, gap = Math.min(2, bw * 0.15);
    var bars = s('g', { 'class': 'bars' });
    buckets.forEach(function (b, i) {
      var acc = 0, range = fmtTick(i * w, w) + DASH + fmtTick((i + 1) * w, w) + ' s';
      STATUSES.forEach(function (st) {
        var c = b[st];
        if (!c) return;
        present[st] = true;
        var top = ys(acc + c), bottom = ys(acc);
        bars.appendChild(tip(s('rect', {
          x: fix(m.l + i * bw + gap / 2), y: fix(top), width: fix(Math.max(0.5, bw - gap)),
          height: fix(Math.max(0.5, bottom - top)), fill: STATUS[st][1], 'data-status': st
        }), range + ': ' + c + ' ' + STATUS[st][0] + ' (of ' + totals[i] + ')'));
        acc += c;
        marks++;
      });
    });
    svg.appendChild(bars);

    var place = labelRows(3), markers = s('g', { 'class': 'chaos-markers' });
    M.chaos.forEach(function (e) {
      if (!ok(e.t)) return;
      var x = fix(xs(e.t)), label = '#' + e.n + ' ' + truncate(str(e.raw.action) || 'chaos', 14);
      var width = label.length * 5.6 + 8, row = place(x, width), ly = m.t - 34 + row * 12;
      var g = s('g', { 'class': 'chaos-marker', 'data-t': e.t });
      g.appendChild(s('line', { x1: x, y1: ly + 3, x2: x, y2: m.t + ph, stroke: CHAOS_COLOR,
                                'stroke-width': 1.2, 'stroke-dasharray': '4 3' }));
      g.appendChild(s('text', { x: x + 2, y: ly, 'class': 'marker-label' }, label));
      tip(g, '#' + e.n + ' at ' + fmtAt(e.t) + ': ' + str(e.raw.action) +
             (e.agent ? ' on ' + e.agent : '') +
             (str(e.raw.detail) ? '\n' + str(e.raw.detail) : ''));
      markers.appendChild(g);
      marks++;
    });
    svg.appendChild(markers);
    fig.querySelector('.chart-body').appendChild(svg);

    var items = STATUSES.filter(function (st) { return present[st]; }).map(function (st) {
      return { label: STATUS[st][0], color: STATUS[st][1] };
    });
    if (M.chaos.length) {
      items.push({ label: 'chaos event (#n as in the table)', color: CHAOS_COLOR, kind: 'dash' });
    }
    legend(fig, items);
    note(fig, fmtInt(timed.length) + ' tasks in ' + n + ' buckets of ' + w + ' s' +
              (untimed ? '; ' + untimed + ' without a finish time are not shown' : '') + '.');
    return marks;
  }

  // ---- chart 2: each agent's circuit and health over time ------------------------------------
  // Runs of one state in the samples; a sample without the agent ('') breaks a run.
  function stateRuns(M, name, member, table) {
    var runs = [];
    M.samples.forEach(function (x, i) {
      var a = field(obj(x.agents), name), st = known(table, isObj(a) ? str(a[member]) : '');
      var t1 = i + 1 < M.samples.length ? M.samples[i + 1].t : Math.max(x.t, M.span);
      var last = runs[runs.length - 1];
      if (last && last.state === st) {
        last.t1 = t1;
      } else {
        runs.push({ state: st, t0: x.t, t1: t1 });
      }
    });
    return runs.filter(function (r) { return r.state !== ''; });
  }
  // Without samples, the circuit is drawn from the agent's transitions (closed before the first).
  function transitionRuns(M, name) {
    var list = M.transitions.filter(function (e) { return e.agent === name && ok(e.t); });
    if (!list.length) return [];
    var runs = [], state = known(CIRCUIT, str(list[0].raw.from)) || 'closed', t0 = 0;
    list.forEach(function (e) {
      if (e.t > t0) runs.push({ state: state, t0: t0, t1: e.t });
      state = known(CIRCUIT, str(e.raw.to)) || 'unknown';
      t0 = Math.max(t0, e.t);
    });
    if (M.span > t0) runs.push({ state: state, t0: t0, t1: M.span });
    return runs;
  }
  function drawAgents(fig, M) {
    var names = M.agents;
    if (!names.length) return noData(fig, 'No agents in this report.');
    var lane = 36, m = { l: 210, r: 16, t: 6, b: 44 }, pw = W - m.l - m.r;
    var H = m.t + names.length * lane + m.b;
    function xs(t) { return m.l + pw * clamp01(t / M.span); }
    var svg = chartSvg(H, 'Circuit state and health of each agent over time');
    var marks = 0, derived = false;
    names.forEach(function (name, i) {
      var y0 = m.t + i * lane, g = s('g', { 'class': 'lane', 'data-agent': name });
      g.appendChild(s('rect', { x: 0, y: y0, width: W, height: lane,
                                'class': i % 2 ? 'lane-bg odd' : 'lane-bg' }));
      g.appendChild(tip(s('text', { x: m.l - 10, y: y0 + 18, 'text-anchor': 'end',
                                    'class': 'lane-label' }, truncate(name, 30)), name));
      var circuit = stateRuns(M, name, 'circuit', CIRCUIT);
      if (!circuit.length) {
        circuit = transitionRuns(M, name);
        if (circuit.length) derived = true;
      }
      var health = stateRuns(M, name, 'health', HEALTH);
      circuit.forEach(function (r) {
        var x = xs(r.t0);
        g.appendChild(tip(s('rect', {
          x: fix(x), y: y0 + 5, width: fix(Math.max(0.8, xs(r.t1) - x)), height: 15,
          fill: CIRCUIT[r.state][1], 'class': 'seg', 'data-state': r.state
        }), name + ': circuit ' + CIRCUIT[r.state][0] + ', ' + fmtAt(r.t0) + ' ' + DASH + ' ' +
            fmtAt(r.t1)));
        marks++;
      });
      health.forEach(function (r) {
        var x = xs(r.t0);
        g.appendChild(tip(s('rect', {
          x: fix(x), y: y0 + 23, width: fix(Math.max(0.8, xs(r.t1) - x)), height: 5,
          fill: HEALTH[r.state][1], 'class': 'hseg', 'data-health': r.state
        }), name + ': ' + HEALTH[r.state][0] + ', ' + fmtAt(r.t0) + ' ' + DASH + ' ' +
            fmtAt(r.t1)));
        marks++;
      });
      if (!circuit.length && !health.length) {
        g.appendChild(s('text', { x: m.l + 6, y: y0 + 18, 'class': 'empty-lane' }, 'no samples'));
      }
      M.chaos.forEach(function (e) {
        if (e.agent !== name || !ok(e.t)) return;
        var x = fix(xs(e.t)), mk = s('g', { 'class': 'chaos-marker' });
        mk.appendChild(s('line', { x1: x, y1: y0 + 2, x2: x, y2: y0 + 30, stroke: CHAOS_COLOR,
                                   'stroke-width': 1.5 }));
        mk.appendChild(s('path', { d: 'M' + (x - 5) + ' ' + (y0 + 1) + 'h10l-5 6z',
                                   fill: CHAOS_COLOR }));
        g.appendChild(tip(mk, '#' + e.n + ' ' + str(e.raw.action) + ' at ' + fmtAt(e.t) +
                              (str(e.raw.detail) ? '\n' + str(e.raw.detail) : '')));
        marks++;
      });
      M.restarts.forEach(function (e) {
        if (e.agent !== name || !ok(e.t)) return;
        g.appendChild(tip(s('circle', { cx: fix(xs(e.t)), cy: y0 + 25.5, r: 4, fill: RESTART_COLOR,
                                        stroke: '#fff', 'stroke-width': 1.2, 'class': 'restart' }),
                          name + ' restarted at ' + fmtAt(e.t) +
                              (str(e.raw.reason) ? ' (' + str(e.raw.reason) + ')' : '')));
        marks++;
      });
      M.healing.forEach(function (e) {
        if (e.agent !== name || !ok(e.t)) return;
        var x = fix(xs(e.t)), y = y0 + 25.5;
        g.appendChild(tip(s('path', { d: 'M' + x + ' ' + (y - 5) + 'l5 5l-5 5l-5 -5z',
                                      fill: HEAL_COLOR,
                                      stroke: '#fff', 'stroke-width': 1, 'class': 'healing' }),
                          'self-healing on ' + name + ' at ' + fmtAt(e.t) +
                              (str(e.raw.detail) ? ': ' + str(e.raw.detail) : '')));
        marks++;
      });
      svg.appendChild(g);
    });
    timeAxis(svg, m.l, W - m.r, m.t + names.length * lane + 2, M.span);
    fig.querySelector('.chart-body').appendChild(svg);
    var items = [{ group: 'circuit' }];
    ['closed', 'half_open', 'open', 'isolated'].forEach(function (k) {
      items.push({ label: CIRCUIT[k][0], color: CIRCUIT[k][1] });
    });
    items.push({ group: 'health (strip)' });
    ['healthy', 'unhealthy', 'unknown'].forEach(function (k) {
      items.push({ label: HEALTH[k][0], color: HEALTH[k][1], kind: 'strip' });
    });
    items.push({ group: 'events' });
    items.push({ label: 'chaos', color: CHAOS_COLOR });
    items.push({ label: 'restart', color: RESTART_COLOR, kind: 'dot' });
    items.push({ label: 'self-healing', color: HEAL_COLOR, kind: 'dot' });
    legend(fig, items);
    if (!M.samples.length) {
      note(fig, 'No samples: circuits are drawn from transitions where there are any.');
    } else {
      note(fig, M.samples.length + (M.samples.length === 1 ? ' sample' : ' samples') + ' over ' +
                fmtSeconds(M.span) + '.' +
                (derived ? ' Lanes without samples are drawn from circuit transitions.' : ''));
    }
    return marks;
  }

  // ---- chart 3: latency distribution ---------------------------------------------------------
  function latencyBin(v) {
    if (v <= LAT_MIN) return 0;
    if (v >= LAT_MAX) return LAT_BINS - 1;
    var at = Math.log(v / LAT_MIN) / Math.log(LAT_MAX / LAT_MIN);
    return Math.min(LAT_BINS - 1, Math.floor(at * LAT_BINS));
  }
  function drawLatency(fig, M) {
    var vals = [];
    M.tasks.forEach(function (t) {
      var v = latencyOf(t);
      if (ok(v) && v >= 0) vals.push({ v: v, status: statusOf(t) });
    });
    if (!vals.length) return noData(fig, 'No task latencies in this report.');
    fig.setAttribute('data-bins', String(LAT_BINS));
    fig.setAttribute('data-min-s', String(LAT_MIN));
    fig.setAttribute('data-max-s', String(LAT_MAX));
    var bins = [], totals = [];
    for (var i = 0; i < LAT_BINS; i++) { bins.push({}); totals.push(0); }
    vals.forEach(function (x) {
      var b = latencyBin(x.v);
      bins[b][x.status] = (bins[b][x.status] || 0) + 1;
      totals[b] += 1;
    });
    var sorted = vals.map(function (x) { return x.v; }).sort(function (a, b) { return a - b; });
    function pct(q) {  // nearest rank
      var rank = Math.ceil(q * sorted.length);
      return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
    }

    var H = 312, m = { l: 56, r: 16, t: 42, b: 42 }, pw = W - m.l - m.r, ph = H - m.t - m.b;
    var scale = countScale(Math.max.apply(null, totals), 5), logSpan = Math.log(LAT_MAX / LAT_MIN);
    function ys(v) { return m.t + ph - ph * v / scale.top; }
    function xs(v) {
      return m.l + pw * clamp01(Math.log(Math.max(v, LAT_MIN) / LAT_MIN) / logSpan);
    }
    var svg = chartSvg(H, 'Distribution of task latencies, by status');
    countAxis(svg, m.l, W - m.r, ys, scale, 'tasks');
    var axis = s('g', { 'class': 'latency-axis' }), y = m.t + ph;
    axis.appendChild(s('line', { x1: m.l, y1: y, x2: W - m.r, y2: y, 'class': 'axis' }));
    [0.001, 0.01, 0.1, 1, 10].forEach(function (d) {
      for (var k = 1; k < 10; k++) {
        var v = d * k;
        if (v > LAT_MAX) break;
        var x = fix(xs(v));
        axis.appendChild(s('line', { x1: x, y1: y, x2: x, y2: y + (k === 1 ? 5 : 3),
                                     'class': 'tick' }));
      }
    });
    [0.001, 0.01, 0.1, 1, 10, 60].forEach(function (v) {
      axis.appendChild(s('text', { x: fix(xs(v)), y: y + 17, 'text-anchor': 'middle' },
                         v < 1 ? v * 1000 + ' ms' : v + ' s'));
    });
    axis.appendChild(s('text', { x: m.l + pw / 2, y: y + 33, 'text-anchor': 'middle',
                                 'class': 'axis-title' },
                       'latency (log scale; below 1 ms and above 60 s counted in the edge bins)'));
    svg.appendChild(axis);

    var marks = 0, present = {}, bw = pw / LAT_BINS, gap = 1.5, bars = s('g', { 'class': 'bars' });
    bins.forEach(function (b, i) {
      var acc = 0;
      var lo = LAT_MIN * Math.pow(LAT_MAX / LAT_MIN, i / LAT_BINS);
      var hi = LAT_MIN * Math.pow(LAT_MAX / LAT_MIN, (i + 1) / LAT_BINS);
      STATUSES.forEach(function (st) {
        var c = b[st];
        if (!c) return;
        present[st] = true;
        var top = ys(acc + c), bottom = ys(acc);
        bars.appendChild(tip(s('rect', {
          x: fix(m.l + i * bw + gap / 2), y: fix(top), width: fix(bw - gap),
          height: fix(Math.max(0.5, bottom - top)), fill: STATUS[st][1], 'data-status': st
        }), fmtLatency(lo) + ' ' + DASH + ' ' + fmtLatency(hi) + ': ' + c + ' ' + STATUS[st][0] +
            ' (of ' + totals[i] + ')'));
        acc += c;
        marks++;
      });
    });
    svg.appendChild(bars);

    var place = labelRows(3);
    [['p50', 0.5], ['p95', 0.95], ['p99', 0.99]].forEach(function (p) {
      var v = pct(p[1]), x = fix(xs(v)), label = p[0] + ' ' + fmtLatency(v);
      fig.setAttribute('data-' + p[0], String(v));
      var row = place(x, label.length * 5.8 + 8), ly = m.t - 28 + row * 12;
      var g = s('g', { 'class': 'percentile', 'data-p': p[0] });
      g.appendChild(s('line', { x1: x, y1: ly + 3, x2: x, y2: m.t + ph, stroke: '#1d232b',
                                'stroke-width': 1.2, 'stroke-dasharray': '2 2' }));
      g.appendChild(s('text', { x: x + 3, y: ly, 'class': 'pct-label' }, label));
      svg.appendChild(tip(g, p[0] + ' latency: ' + fmtLatency(v)));
      marks++;
    });
    fig.querySelector('.chart-body').appendChild(svg);
    legend(fig, STATUSES.filter(function (st) { return present[st]; }).map(function (st) {
      return { label: STATUS[st][0], color: STATUS[st][1] };
    }));
    var mean = sorted.reduce(function (a, v) { return a + v; }, 0) / sorted.length;
    note(fig, fmtInt(sorted.length) + ' tasks; min ' + fmtLatency(sorted[0]) + ', mean ' +
              fmtLatency(mean) + ', p50 ' + fmtLatency(pct(0.5)) + ', p95 ' +
              fmtLatency(pct(0.95)) + ', p99 ' + fmtLatency(pct(0.99)) + ', max ' +
              fmtLatency(sorted[sorted.length - 1]) + '.');
    return marks;
  }

  // ---- header, summary cards, tables ------------------------------------------------------------
  function renderHeader(R, M) {
    var title = str(R.title) || 'mend demo';
    document.title = title + ' \u2014 report';
    document.getElementById('report-title').textContent = title;
    var meta = document.getElementById('report-meta'), parts = [];
    if (str(R.started_at)) parts.push(['started', str(R.started_at)]);
    parts.push(['ran for', M.duration > 0 ? fmtSeconds(M.duration) : 'unknown']);
    if (str(R.base_url)) parts.push(['API at', str(R.base_url)]);
    if (str(R.version)) parts.push(['mend', str(R.version)]);
    if (str(R.directory)) parts.push(['directory', str(R.directory)]);
    parts.forEach(function (p) {
      add(meta, h('span', null, [p[0] + ' ', h('strong', null, p[1])]));
    });
  }
  function renderSummary(R, M) {
    var T = obj(R.totals), o = M.outcomes;
    function total(k, computed) { var v = num(T[k]); return ok(v) ? v : computed; }
    function sum(member) {
      return M.tasks.reduce(function (a, t) {
        var v = num(t[member]);
        return ok(v) ? a + v : a;
      }, 0);
    }
    var answered = o.succeeded + o.succeeded_after_retry + o.fallback + o.degraded;
    var share = M.outcomeTotal > 0 ? answered / M.outcomeTotal : NaN;
    var failed = total('failed', o.failed + o.error);
    var opened = M.transitions.filter(function (e) { return str(e.raw.to) === 'open'; }).length;
    var sent = total('notifications_sent', NaN);
    var received = total('notifications_received', M.notifications.length);
    var cards = [
      ['Tasks', fmtInt(total('tasks', M.tasks.length || M.outcomeTotal)),
       fmtInt(total('attempts', sum('attempts'))) + ' attempts', 'info'],
      ['Answered', fmtPct(answered, M.outcomeTotal),
       fmtInt(answered) + ' of ' + fmtInt(M.outcomeTotal),
       !ok(share) ? '' : share >= 0.99 ? 'good' : share >= 0.9 ? 'warn' : 'bad'],
      ['Retries', fmtInt(total('retries', sum('retries'))),
       fmtInt(o.succeeded_after_retry) + ' tasks saved by retry', ''],
      ['Fallbacks', fmtInt(total('fallbacks', o.fallback)), 'answered by another agent', ''],
      ['Degraded', fmtInt(total('degraded', o.degraded)), 'degraded answers',
       o.degraded ? 'warn' : ''],
      ['Failed', fmtInt(failed), fmtInt(o.error) + ' of them errors', failed > 0 ? 'bad' : 'good'],
      ['Circuit transitions', fmtInt(total('circuit_transitions', M.transitions.length)),
       opened + ' openings', ''],
      ['Restarts', fmtInt(total('restarts', M.restarts.length)), 'agent processes', ''],
      ['Self-healing', fmtInt(total('self_healing', M.healing.length)), 'recovery actions', ''],
      ['Notifications', fmtInt(received) + (ok(sent) ? ' / ' + fmtInt(sent) : ''),
       ok(sent) ? 'received / sent' : 'received',
       ok(sent) ? (received >= sent ? 'good' : 'warn') : '']
    ];
    var box = document.getElementById('summary');
    cards.forEach(function (c) {
      add(box, h('div', { 'class': 'card ' + c[3] }, [
        h('div', { 'class': 'label' }, c[0]), h('div', { 'class': 'value' }, c[1]),
        h('div', { 'class': 'sub' }, c[2])]));
    });
  }
  // cols: [{title, cls}] (cls: 'num', 'wrap' or 'nowrap'); rows: arrays of cells (text or nodes).
  function table(cols, rows, empty, foot) {
    var head = h('tr', null, cols.map(function (c) {
      return h('th', { 'class': c.cls === 'num' ? 'num' : null }, c.title);
    }));
    function row(cells) {
      return h('tr', null, cells.map(function (cell, i) {
        return h('td', { 'class': (cols[i] || {}).cls || null }, cell);
      }));
    }
    var body = h('tbody', null, rows.length ? rows.map(row) : h('tr', null, h('td', {
      colspan: cols.length, 'class': 'empty' }, empty)));
    return h('table', { 'class': 'data' },
             [h('thead', null, head), body, foot ? h('tfoot', null, row(foot)) : null]);
  }
  function col(title, cls) { return { title: title, cls: cls }; }
  function section(id, title, content, wide) {
    return h('section', { id: id, 'class': wide ? 'wide' : null }, [h('h2', null, title), content]);
  }
  function warRoomLink(url) {
    var u = str(url);
    if (!/^https?:\/\/\S+$/i.test(u)) return u;  // anything else stays text: no javascript: links
    return h('a', { href: u, rel: 'noopener noreferrer', target: '_blank', title: u },
             'war room \u2197');
  }
  function renderRecords(root, M) {
    root.appendChild(section('records-table', 'Tickets and incidents', table(
      [col('id', 'nowrap'), col('kind'), col('level'), col('status'), col('SLA due', 'nowrap'),
       col('occurrences', 'num'), col('agent', 'nowrap'), col('title', 'wrap'),
       col('war room', 'nowrap')],
      M.records.map(function (r) {
        var level = str(r.level), occ = num(r.occurrences), type = str(r.error_type);
        return [h('code', null, str(r.id)), str(r.kind),
                level ? chip(level, own(LEVEL, level) ? LEVEL[level] : '#9aa1a9') : '',
                str(r.status), str(r.sla_due), ok(occ) ? fmtInt(occ) : '', str(r.agent),
                h('span', { title: type ? 'error type: ' + type : null }, str(r.title)),
                warRoomLink(r.war_room_url)];
      }), 'no tickets or incidents'), true));
  }
  function renderOutcomeTable(root, M) {
    var o = M.outcomes, total = M.outcomeTotal;
    var shown = STATUSES.filter(function (st) { return st !== 'other' || o.other > 0; });
    root.appendChild(section('outcomes-table', 'Outcomes by status', table(
      [col('status'), col('tasks', 'num'), col('share', 'num'), col('')],
      shown.map(function (st) {
        var width = total > 0 ? (150 * o[st] / total).toFixed(1) : '0';  // 150 px = all
        return [chip(STATUS[st][0], STATUS[st][1]), fmtInt(o[st]), fmtPct(o[st], total),
                h('span', { 'class': 'bar',
                            style: 'width:' + width + 'px;background:' + STATUS[st][1] })];
      }), 'no tasks', ['total', fmtInt(total), total ? '100.0 %' : DASH, ''])));
  }
  function renderNotifications(root, R, M) {
    var kinds = new Map();
    M.notifications.forEach(function (e) {
      var k = str(e.raw.kind) || '(no kind)';
      if (!kinds.has(k)) kinds.set(k, { count: 0, levels: new Set(), first: NaN, last: NaN });
      var v = kinds.get(k);
      v.count++;
      if (str(e.raw.level)) v.levels.add(str(e.raw.level));
      if (ok(e.t)) {
        v.first = ok(v.first) ? Math.min(v.first, e.t) : e.t;
        v.last = ok(v.last) ? Math.max(v.last, e.t) : e.t;
      }
    });
    var sent = num(obj(R.totals).notifications_sent), n = M.notifications.length;
    var title = 'Notifications received by the webhook' +
                (ok(sent) ? ' (' + fmtInt(n) + ' received, ' + fmtInt(sent) + ' sent)' : '');
    root.appendChild(section('notifications-table', title, table(
      [col('kind'), col('count', 'num'), col('levels'), col('first', 'num'), col('last', 'num')],
      Array.from(kinds.entries()).map(function (kv) {
        var v = kv[1];
        return [kv[0], fmtInt(v.count), Array.from(v.levels).join(', '), fmtAt(v.first),
                fmtAt(v.last)];
      }), 'no notifications received')));
  }
  function renderTimelines(root, M) {
    root.appendChild(section('chaos-table', 'Chaos timeline', table(
      [col('#', 'num'), col('time', 'num'), col('agent', 'nowrap'), col('action'),
       col('detail', 'wrap')],
      M.chaos.map(function (e) {
        return ['#' + e.n, fmtAt(e.t), e.agent, str(e.raw.action), str(e.raw.detail)];
      }), 'no chaos events')));
    root.appendChild(section('transitions-table', 'Circuit transitions', table(
      [col('time', 'num'), col('agent', 'nowrap'), col('from'), col(''), col('to')],
      M.transitions.map(function (e) {
        return [fmtAt(e.t), e.agent, stateChip(CIRCUIT, str(e.raw.from)), '\u2192',
                stateChip(CIRCUIT, str(e.raw.to))];
      }), 'no circuit transitions')));
    var recovery = M.restarts.map(function (e) {
      return { e: e, kind: 'restart', what: str(e.raw.reason) };
    }).concat(M.healing.map(function (e) {
      return { e: e, kind: 'self-healing', what: str(e.raw.detail) };
    }));
    recovery.sort(function (a, b) {
      return (ok(a.e.t) ? a.e.t : Infinity) - (ok(b.e.t) ? b.e.t : Infinity) || 0;
    });
    root.appendChild(section('recovery-table', 'Restarts and self-healing', table(
      [col('time', 'num'), col('agent', 'nowrap'), col('action', 'nowrap'),
       col('reason / detail', 'wrap')],
      recovery.map(function (r) { return [fmtAt(r.e.t), r.e.agent, r.kind, r.what]; }),
      'no restarts and no self-healing')));
  }
  // What on-call needs first (tickets, incidents) first; then counts; then the timelines.
  function renderTables(R, M) {
    var root = document.getElementById('tables');
    renderRecords(root, M);
    renderOutcomeTable(root, M);
    renderNotifications(root, R, M);
    renderTimelines(root, M);
  }

  // ---- run every part on its own, so that one failure leaves the rest drawn -------------------
  var R = {};
  try {
    var parsed = JSON.parse(document.getElementById('report-data').textContent);
    if (isObj(parsed)) R = parsed;  // anything else draws as an empty report
  } catch (e) {
    reportError('report data', e);
  }
  var M = null;
  try { M = buildModel(R); } catch (e) { reportError('model', e); }
  if (!M) M = buildModel({});
  var parts = [['header', renderHeader], ['summary', renderSummary], ['tables', renderTables]];
  parts.forEach(function (p) {
    try { p[1](R, M); } catch (e) { reportError(p[0], e); }
  });
  var charts = [['outcomes', drawOutcomes], ['agents', drawAgents], ['latency', drawLatency]];
  charts.forEach(function (p) {
    var fig = document.querySelector('figure[data-chart="' + p[0] + '"]');
    if (!fig) { reportError(p[0], 'no figure for this chart'); return; }
    try {
      var marks = p[1](fig, M);
      fig.setAttribute('data-marks', String(marks));
      fig.setAttribute('data-drawn', 'true');
    } catch (e) {
      fig.setAttribute('data-drawn', 'error');
      reportError(p[0] + ' chart', e);
    }
  });
})();
