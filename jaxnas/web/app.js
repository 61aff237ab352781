// The jaxnas run page: polls /api/run and draws everything with plain SVG.
"use strict";

const POLL_MS = 2000;
const view = { data: null, text: "", sortKey: "fitness", sortAsc: true, selected: null,
               bestHash: null, cost: "params" };

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (x, digits) => (x === null || x === undefined ? "–" : x.toFixed(digits));
const grouped = (x) => x.toLocaleString("en-US");
function short(x) {
  const units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) if (x >= size) return (x / size).toPrecision(3) + unit;
  return String(x);
}

function scale(lo, hi, from, to, log) {
  const f = log ? Math.log10 : (v) => v;
  const a = f(lo), b = f(hi);
  const span = b - a || 1;
  return (v) => from + ((f(v) - a) / span) * (to - from);
}

function ticks(lo, hi, count, log) {
  if (log) {
    const out = [];
    const steps = Math.log10(hi / lo) < 2 ? [1, 2, 5] : [1];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const s of steps) if (s * 10 ** e >= lo && s * 10 ** e <= hi) out.push(s * 10 ** e);
    }
    return out.length ? out : [lo, hi];
  }
  const step = (hi - lo) / count || 1;
  return Array.from({ length: count + 1 }, (_, i) => lo + i * step);
}

// An SVG plot frame: axes with ticks; returns the svg parts and the two scales.
function frame(w, h, xs, ys, opts) {
  // opts: xlabel, ylabel, xlog, yrange ([lo, hi] instead of the data's extremes).
  const m = { l: 52, r: 12, t: 26, b: 36 };
  const finite = (v) => v !== null && Number.isFinite(v);
  const xv = xs.filter(finite), yv = ys.filter(finite);
  let [x0, x1] = [Math.min(...xv), Math.max(...xv)];
  let [y0, y1] = opts.yrange || [Math.min(...yv), Math.max(...yv)];
  if (x0 === x1) { x0 = opts.xlog ? x0 / 2 : x0 - 1; x1 = opts.xlog ? x1 * 2 : x1 + 1; }
  if (y0 === y1) { y0 -= 0.05; y1 += 0.05; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = scale(x0, x1, m.l, w - m.r, opts.xlog);
  const sy = scale(y0, y1, h - m.b, m.t, false);
  const parts = [`<line x1="${m.l}" y1="${h - m.b}" x2="${w - m.r}" y2="${h - m.b}" stroke="#999"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${h - m.b}" stroke="#999"/>`];
  for (const t of ticks(x0, x1, 5, opts.xlog)) {
    parts.push(`<text x="${sx(t)}" y="${h - m.b + 14}" text-anchor="middle">${
      opts.xlog ? short(t) : Math.round(t)}</text>`);
  }
  for (const t of ticks(y0, y1, 4, false)) {
    parts.push(`<text x="${m.l - 5}" y="${sy(t) + 4}" text-anchor="end">${t.toFixed(3)}</text>`,
      `<line x1="${m.l}" y1="${sy(t)}" x2="${w - m.r}" y2="${sy(t)}" stroke="#eee"/>`);
  }
  parts.push(`<text x="${(m.l + w - m.r) / 2}" y="${h - 4}" text-anchor="middle">${opts.xlabel}</text>`,
    `<text transform="translate(12 ${(m.t + h - m.b) / 2}) rotate(-90)" text-anchor="middle">${
      opts.ylabel}</text>`);
  return { parts, sx, sy };
}

// The extremes of values, but a few outliers on the bad side (above for losses, below
// for accuracies) do not stretch the axis: it stops at 2x the spread of the best 90%.
function robustRange(values, badIsHigh) {
  const sorted = values.filter((v) => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
  const lo = sorted[0], hi = sorted[sorted.length - 1];
  if (badIsHigh) {
    const q = sorted[Math.floor(0.9 * (sorted.length - 1))];
    return [lo, Math.min(hi, q + (q - lo))];
  }
  const q = sorted[Math.ceil(0.1 * (sorted.length - 1))];
  return [Math.max(lo, q - (hi - q)), hi];
}

// A point, or a hollow triangle at the edge for a value beyond the axis.
function point(f, r, x, y, range, fill, radius) {
  const title = `<title>${r.hash.slice(0, 12)}: ${y.toFixed(4)}</title>`;
  const clipped = Math.min(Math.max(y, range[0]), range[1]);
  if (clipped === y) {
    return `<circle class="point" data-hash="${r.hash}" cx="${f.sx(x)}" cy="${f.sy(y)}" r="${
      radius}" fill="${fill}" opacity="0.75">${title}</circle>`;
  }
  const tip = f.sy(clipped), dir = y > clipped ? -1 : 1, cx = f.sx(x);
  return `<polygon class="point" data-hash="${r.hash}" points="${cx},${tip} ${cx - 4},${
    tip - 7 * dir} ${cx + 4},${tip - 7 * dir}" fill="none" stroke="${fill}">${title}</polygon>`;
}

const svg = (w, h, parts) =>
  `<svg viewBox="0 0 ${w} ${h}" xmlns="http://www.w3.org/2000/svg">${parts.join("")}</svg>`;

function generationColour(g, last) {
  return `hsl(${210 - 170 * (last ? g / last : 0)}, 60%, 50%)`;
}

function drawCurve(rows) {
  const w = 640, h = 300;
  const done = rows.filter((r) => r.fitness !== null);
  if (!done.length) { $("curve").innerHTML = '<p class="muted">no evaluations yet</p>'; return; }
  const range = robustRange(done.map((r) => r.fitness), true);
  const f = frame(w, h, rows.map((r) => r.index + 1), done.map((r) => r.fitness),
    { xlabel: "evaluation", ylabel: "fitness (lower is better)", yrange: range });
  const last = Math.max(...rows.map((r) => r.generation));
  for (const r of done) {
    f.parts.push(point(f, r, r.index + 1, r.fitness, range,
      generationColour(r.generation, last), 3));
  }
  const byGeneration = new Map();
  for (const r of done) {
    if (!byGeneration.has(r.generation)) byGeneration.set(r.generation, []);
    byGeneration.get(r.generation).push(r);
  }
  const medians = [...byGeneration.values()].map((group) => {
    const values = group.map((r) => r.fitness).sort((a, b) => a - b);
    return [Math.max(...group.map((r) => r.index)) + 1, values[(values.length - 1) >> 1]];
  });
  f.parts.push(`<polyline fill="none" stroke="#4e79a7" stroke-width="1.5" points="${
    medians.map(([x, y]) => `${f.sx(x)},${f.sy(y)}`).join(" ")}"/>`);
  let best = Infinity;
  const steps = [];
  for (const r of rows) {
    if (r.fitness !== null && r.fitness < best) {
      if (steps.length) steps.push(`${f.sx(r.index + 1)},${f.sy(best)}`);
      best = r.fitness;
      steps.push(`${f.sx(r.index + 1)},${f.sy(best)}`);
    }
  }
  steps.push(`${f.sx(rows.length)},${f.sy(best)}`);
  f.parts.push(`<polyline id="best-so-far" fill="none" stroke="#e15759" stroke-width="2" points="${
    steps.join(" ")}"/>`);
  f.parts.push(`<text x="${w - 14}" y="12" text-anchor="end"><tspan fill="#e15759">best so far` +
    `</tspan> · <tspan fill="#4e79a7">generation median</tspan> · dots: evaluations by generation</text>`);
  $("curve").innerHTML = svg(w, h, f.parts);
}

// Indices of the points no other point beats in both lower cost and higher accuracy.
function paretoFront(rows, cost) {
  const sorted = rows.filter((r) => r.val_acc !== null)
    .sort((a, b) => a[cost] - b[cost] || b.val_acc - a.val_acc);
  const front = [];
  let best = -Infinity;
  for (const r of sorted) if (r.val_acc > best) { front.push(r); best = r.val_acc; }
  return front;
}

function drawPareto(rows) {
  const w = 640, h = 300, cost = view.cost;
  const done = rows.filter((r) => r.val_acc !== null && r[cost] > 0);
  if (!done.length) { $("pareto").innerHTML = '<p class="muted">no evaluations yet</p>'; return; }
  const range = robustRange(done.map((r) => r.val_acc), false);
  const f = frame(w, h, done.map((r) => r[cost]), done.map((r) => r.val_acc),
    { xlog: true, xlabel: cost === "params" ? "parameters" : "FLOPs per example",
      ylabel: "validation accuracy", yrange: range });
  const front = paretoFront(done, cost);
  const onFront = new Set(front.map((r) => r.hash));
  for (const r of done) {
    const good = onFront.has(r.hash);
    f.parts.push(point(f, r, r[cost], r.val_acc, range, good ? "#e15759" : "#4e79a7",
      good ? 4 : 3));
  }
  const points = [];
  front.forEach((r, i) => {
    if (i) points.push(`${f.sx(r[cost])},${f.sy(front[i - 1].val_acc)}`);
    points.push(`${f.sx(r[cost])},${f.sy(r.val_acc)}`);
  });
  f.parts.push(`<polyline id="pareto-front" fill="none" stroke="#e15759" stroke-width="1.5" points="${
    points.join(" ")}"/>`);
  f.parts.push(`<text x="${w - 14}" y="12" text-anchor="end" fill="#e15759">Pareto front (${
    front.length})</text>`);
  $("pareto").innerHTML = svg(w, h, f.parts);
}

function sortedRows(rows) {
  const key = view.sortKey, sign = view.sortAsc ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return a.index - b.index;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}

function drawTable(rows) {
  for (const th of document.querySelectorAll("#evaluations th")) {
    th.className = th.dataset.key === view.sortKey ? (view.sortAsc ? "sorted-asc" : "sorted-desc") : "";
  }
  $("evaluations").querySelector("tbody").innerHTML = sortedRows(rows).map((r) =>
    `<tr data-hash="${r.hash}" class="${r.hash === view.bestHash ? "best" : ""}${
      r.hash === view.selected ? " selected" : ""}"><td>${r.index + 1}</td>` +
    `<td class="hash">${r.hash.slice(0, 12)}</td><td>${fmt(r.fitness, 4)}</td>` +
    `<td>${fmt(r.val_loss, 4)}</td><td>${fmt(r.val_acc, 4)}</td><td>${grouped(r.params)}</td>` +
    `<td>${grouped(r.flops)}</td><td>${r.generation}</td><td>${r.steps}</td>` +
    `<td class="training">${esc(r.training)}</td>` +
    `<td class="summary">${esc(r.summary)}</td></tr>`).join("");
  $("evaluations").classList.toggle("joint", rows.some((r) => r.training));
  $("table-count").textContent = `(${rows.length})`;
}

function drawImportance(importance) {
  const note = $("importance-note"), box = $("importance");
  if (!importance) {
    note.textContent = "Importance needs at least 5 evaluations with a finite loss.";
    box.innerHTML = "";
    return;
  }
  note.textContent = `Ridge regressions of validation loss on the ops, positions and edges of ${
    importance.evaluations} evaluations: an effect is the change in validation loss with one ` +
    "more node (or edge) of that kind, or one standard deviation more of a searched training " +
    "number; negative is good. Bars: 90% bootstrap intervals. " +
    "R² is the leave-one-out fit of each model; near zero or below, the effects are noise.";
  const titles = { op: "Ops", position: "Positions", edge: "Edges (from op -> to op)" };
  if (importance.groups.hyperparameter) titles.hyperparameter = "Training numbers";
  box.innerHTML = Object.keys(titles).map((kind) => {
    const all = importance.features.filter((f) => f.kind === kind);
    if (!all.length) return `<div><h3>${titles[kind]}</h3><p class="muted">no varying feature</p></div>`;
    const shown = all.length > 12 ? [...all.slice(0, 8), ...all.slice(-4)] : all;
    const w = 420, rowH = 18, left = 190, h = shown.length * rowH + 24;
    const lo = Math.min(0, ...shown.map((f) => f.low)), hi = Math.max(0, ...shown.map((f) => f.high));
    const sx = scale(lo, hi, left, w - 10, false);
    const parts = [`<line x1="${sx(0)}" y1="0" x2="${sx(0)}" y2="${h - 20}" stroke="#999"/>`];
    shown.forEach((f, i) => {
      const y = i * rowH + 4;
      const colour = f.effect < 0 ? "#59a14f" : "#e15759";
      parts.push(`<g class="feature" data-kind="${kind}" data-name="${esc(f.name)}">` +
        `<title>${esc(f.name)}: effect ${f.effect.toFixed(4)} [${f.low.toFixed(4)}, ${
          f.high.toFixed(4)}], in ${(100 * f.frequency).toFixed(0)}% of evaluations</title>` +
        `<text x="${left - 6}" y="${y + 11}" text-anchor="end">${esc(f.name.slice(0, 30))}</text>` +
        `<rect x="${Math.min(sx(0), sx(f.effect))}" y="${y + 2}" width="${
          Math.abs(sx(f.effect) - sx(0))}" height="${rowH - 6}" fill="${colour}" opacity="0.8"/>` +
        `<line x1="${sx(f.low)}" y1="${y + 7}" x2="${sx(f.high)}" y2="${y + 7}" stroke="#333"/></g>`);
    });
    parts.push(`<text x="${sx(lo)}" y="${h - 6}">${lo.toFixed(3)}</text>`,
      `<text x="${sx(hi)}" y="${h - 6}" text-anchor="end">${hi.toFixed(3)}</text>`);
    const r2 = importance.groups[kind].r2;
    const more = all.length > shown.length ? `, the 8 best and 4 worst of ${all.length}` : "";
    return `<div><h3>${titles[kind]} <span class="muted">R² ${r2.toFixed(2)}${more}</span></h3>${
      svg(w, h, parts)}</div>`;
  }).join("");
}

const drawings = new Map();
async function drawArch(target, hash, label, name) {
  if (!hash) { $(target).innerHTML = ""; $(name).textContent = label; return; }
  if (!drawings.has(hash)) {
    const response = await fetch(`api/arch/${hash}.svg`);
    drawings.set(hash, response.ok ? await response.text() : "<p>not found</p>");
  }
  $(target).innerHTML = drawings.get(hash);
  $(target).dataset.hash = hash;
  $(name).textContent = label;
}

function bestRow(data) {
  if (data.result && data.result.best) return data.result.best.hash;
  const top = Math.max(...data.evaluations.map((r) => r.steps));
  const finished = data.evaluations.filter((r) => r.steps === top && r.fitness !== null);
  if (!finished.length) return null;
  return finished.reduce((a, b) => (b.fitness < a.fitness ? b : a)).hash;
}

function render() {
  const data = view.data, rows = data.evaluations;
  const c = data.config || {};
  $("run-name").textContent = data.directory;
  $("status").textContent = data.status;
  $("status").className = `badge ${data.status}`;
  $("settings").textContent = data.config ? `${c.space} space · ${c.strategy} · ${c.dataset} · ` +
    `objective ${c.objective} · population ${c.population} · ${c.steps} steps` : "";
  const p = data.progress;
  const budget = p.budget_evals || rows.length || 1;
  $("progress-fill").style.width = `${Math.min(100, (100 * rows.length) / budget)}%`;
  const parts = [`${rows.length} / ${budget} evaluations`];
  if (p.generation !== null) parts.push(`generation ${p.generation}`);
  if (p.elapsed_s !== null) parts.push(`${p.elapsed_s.toFixed(1)} s searching`);
  if (p.budget_minutes) parts.push(`time budget ${p.budget_minutes} min`);
  view.bestHash = bestRow(data);
  // In a joint search one architecture may be evaluated at several training numbers.
  const best = rows.filter((r) => r.hash === view.bestHash && r.fitness !== null)
    .reduce((a, b) => (a && a.fitness <= b.fitness ? a : b), null);
  if (best) {
    parts.push(`best fitness ${fmt(best.fitness, 4)}, accuracy ${fmt(best.val_acc, 4)}` +
      (best.training ? ` at ${best.training}` : ""));
  }
  if (data.result && data.result.test_accuracy !== null) {
    parts.push(`test accuracy after retraining ${data.result.test_accuracy.toFixed(4)}`);
  }
  $("progress-text").textContent = parts.join(" · ");
  drawCurve(rows);
  drawPareto(rows);
  drawTable(rows);
  drawImportance(data.importance);
  drawArch("best-drawing", view.bestHash, view.bestHash ? view.bestHash.slice(0, 12) : "", "best-name");
  document.body.dataset.status = data.status;
  document.body.dataset.evaluations = String(rows.length);
}

function select(hash) {
  view.selected = hash;
  drawArch("selected-drawing", hash, hash.slice(0, 12), "selected-name");
  if (view.data) drawTable(view.data.evaluations);
}

async function poll() {
  try {
    const response = await fetch("api/run", { cache: "no-store" });
    const text = await response.text();
    if (text !== view.text) {
      view.text = text;
      view.data = JSON.parse(text);
      render();
    }
  } catch (error) {
    $("status").textContent = "server unreachable";
    $("status").className = "badge";
  }
  setTimeout(poll, POLL_MS);
}

document.querySelector("#evaluations thead").addEventListener("click", (event) => {
  const key = event.target.dataset.key;
  if (!key) return;
  view.sortAsc = view.sortKey === key ? !view.sortAsc : true;
  view.sortKey = key;
  if (view.data) drawTable(view.data.evaluations);
});
document.body.addEventListener("click", (event) => {
  const target = event.target.closest("tbody tr, circle.point");
  if (target && target.dataset.hash) select(target.dataset.hash);
});
$("cost").addEventListener("change", (event) => {
  view.cost = event.target.value;
  if (view.data) drawPareto(view.data.evaluations);
});
poll();
