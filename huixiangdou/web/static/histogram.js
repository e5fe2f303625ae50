// The calibration picture: histograms of P(on-topic) for the on-topic and the chatter examples on
// one 0–1 axis, with the threshold as a vertical line, drawn as SVG (no chart library to ship).

import { t } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 280;
const PAD = { left: 44, right: 16, top: 46, bottom: 40 };
const BINS = 20;

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function counts(scores) {
  const out = new Array(BINS).fill(0);
  for (const s of scores) out[Math.min(BINS - 1, Math.max(0, Math.floor(s * BINS)))] += 1;
  return out;
}

export function drawHistogram(svg, { good = [], bad = [], threshold = null }) {
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t('chart.aria', { good: good.length, bad: bad.length }));
  const g = counts(good);
  const b = counts(bad);
  const top = Math.max(1, ...g, ...b);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (v) => PAD.left + v * plotW;
  const y = (c) => PAD.top + plotH - (c / top) * plotH;

  // Grid and y axis: about four count ticks.
  const step = niceStep(top / 4);
  for (let c = 0; c <= top; c += step) {
    svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(c), y2: y(c), class: 'grid' }));
    svg.append(el('text', { x: PAD.left - 6, y: y(c) + 4, class: 'tick', 'text-anchor': 'end' }, String(c)));
  }
  for (let i = 0; i <= 4; i += 1) {
    const v = i / 4;
    svg.append(el('text', { x: x(v), y: H - PAD.bottom + 16, class: 'tick', 'text-anchor': 'middle' }, v.toFixed(2)));
  }
  svg.append(el('text', { x: PAD.left + plotW / 2, y: H - 6, class: 'axis-label', 'text-anchor': 'middle' },
    t('chart.axis')));

  // Side by side within each bin, so neither class hides the other.
  const binW = plotW / BINS;
  const barW = binW / 2 - 1;
  for (let i = 0; i < BINS; i += 1) {
    if (g[i]) svg.append(bar(x(i / BINS) + 1, y(g[i]), barW, y(0) - y(g[i]), 'bar-good', t('chart.barGood', { n: g[i], from: (i / BINS).toFixed(2), to: ((i + 1) / BINS).toFixed(2) })));
    if (b[i]) svg.append(bar(x(i / BINS) + 1 + barW, y(b[i]), barW, y(0) - y(b[i]), 'bar-bad', t('chart.barBad', { n: b[i], from: (i / BINS).toFixed(2), to: ((i + 1) / BINS).toFixed(2) })));
  }
  svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: 'axis' }));
  if (!good.length && !bad.length) {
    svg.append(el('text', { x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, class: 'axis-label', 'text-anchor': 'middle' },
      t('chart.empty')));
  }

  if (typeof threshold === 'number') {
    const tx = x(Math.min(1, Math.max(0, threshold)));
    svg.append(el('line', { x1: tx, x2: tx, y1: PAD.top - 16, y2: y(0), class: 'threshold' }));
    const right = threshold > 0.75;
    svg.append(el('text', { x: tx + (right ? -6 : 6), y: PAD.top - 6, class: 'threshold-label', 'text-anchor': right ? 'end' : 'start' },
      t('chart.threshold', { n: threshold.toFixed(3) })));
  }

  // Legend, top left.
  const legend = el('g', { transform: `translate(${PAD.left}, 6)` });
  legend.append(el('rect', { x: 0, y: 0, width: 12, height: 12, class: 'bar-good' }));
  legend.append(el('text', { x: 18, y: 10, class: 'legend' }, t('chart.legendGood', { n: good.length })));
  legend.append(el('rect', { x: 150, y: 0, width: 12, height: 12, class: 'bar-bad' }));
  legend.append(el('text', { x: 168, y: 10, class: 'legend' }, t('chart.legendBad', { n: bad.length })));
  svg.append(legend);
}

// 1, 2 or 5 times a power of ten: ticks an eye reads at once.
function niceStep(raw) {
  if (raw <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

function bar(bx, by, bw, bh, cls, title) {
  const r = el('rect', { x: bx, y: by, width: Math.max(1, bw), height: Math.max(0, bh), class: cls });
  r.append(el('title', {}, title));
  return r;
}
