// A wait the page shows while it lasts: an animated bar and the seconds so far, ticking once a second,
// for anything without a measure of its own (a connection test, an upload, the first words of an answer).

import { h } from './dom.js';
import { t } from './i18n.js';
import { elapsed } from './format.js';

// A bar and a counter that moves; `label` is a catalogue text. Call stop() when the wait ends.
export function waiting(label) {
  const counter = h('span', { class: 'muted elapsed' }, elapsed(0));
  const el = h('div', { class: 'waiting', role: 'status' },
    h('div', { class: 'waiting-head' }, h('span', {}, label), counter),
    h('div', { class: 'bar' }, h('div', { class: 'bar-fill indeterminate' })));
  const started = performance.now();
  const timer = setInterval(() => { counter.textContent = elapsed((performance.now() - started) / 1000); }, 1000);
  return { el, stop: () => clearInterval(timer), seconds: () => (performance.now() - started) / 1000 };
}
