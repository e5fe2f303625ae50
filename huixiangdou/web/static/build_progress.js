// The rebuild/recalibration job as a progress bar: polls GET /api/rebuild every 500 ms while the
// job runs (the Knowledge base and the Examples pages share the one job) and says how it ended.

import { api } from './api.js';
import { h, replace, badge } from './dom.js';
import { seconds } from './format.js';

const PHASES = { parse: 'Reading files', embed: 'Embedding chunks', calibrate: 'Calibrating the reject model', save: 'Saving the store' };
const STATES = { idle: 'muted', running: 'info', done: 'ok', failed: 'error', cancelled: 'muted' };

export class BuildProgress {
  constructor(el, { onFinish, report }) {
    this.el = el;
    this.onFinish = onFinish;
    this.report = report;
    this.timer = null;
    this.stopped = false;
  }

  // Show `status`; keep polling while it runs, and call onFinish once when a run we watched ends.
  show(status, watching = false) {
    if (this.stopped) return;
    this.el.dataset.state = status.state;
    replace(this.el, ...this.describe(status));
    clearTimeout(this.timer);
    if (status.state === 'running') {
      this.timer = setTimeout(() => this.poll(), 500);
    } else if (watching && this.onFinish) {
      this.onFinish(status);
    }
  }

  async poll() {
    try {
      this.show(await api.get('/api/rebuild'), true);
    } catch (err) {
      this.report(err);
      this.timer = setTimeout(() => this.poll(), 2000);
    }
  }

  // Ask the server to stop the running build; the poll then shows it "cancelled".
  async cancel() {
    try {
      this.show(await api.post('/api/rebuild/cancel'), true);
    } catch (err) {
      this.report(err);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  describe(status) {
    const head = h('div', { class: 'progress-head' }, badge(status.state, STATES[status.state] || 'muted'));
    if (status.state === 'idle') {
      head.append(h('span', { class: 'muted' }, 'No build has run since the console started.'));
      return [head];
    }
    if (status.state === 'running') {
      const total = status.total || 0;
      const share = total ? Math.min(1, status.done / total) : 0;
      head.append(h('span', {}, `${PHASES[status.phase] || 'Starting'}${total ? ` ${status.done}/${total}` : ''}`),
        status.message ? h('span', { class: 'muted' }, status.message) : null,
        h('button', { id: 'cancel-build-button', class: 'ghost danger', type: 'button', onclick: () => this.cancel(),
          title: 'Stop this build; the store answering now stays' }, 'Cancel'));
      const fill = h('div', { class: 'bar-fill' + (total ? '' : ' indeterminate') });
      fill.style.width = total ? `${(share * 100).toFixed(1)}%` : '30%';
      return [head, h('div', { class: 'bar', role: 'progressbar', 'aria-valuenow': Math.round(share * 100) }, fill)];
    }
    if (status.state === 'cancelled') {
      head.append(h('span', { class: 'muted' }, status.message || 'Cancelled; the previous store still answers.'));
      return [head];
    }
    if (status.state === 'failed') {
      head.append(h('span', { class: 'error-text' }, status.message || 'The build failed; see the server log.'));
      return [head];
    }
    const r = status.report;
    if (r) {
      head.append(h('span', {}, `Done in ${seconds(r.seconds)}: ${r.indexed.length} indexed, ${r.reused.length} reused, `
        + `${r.skipped.length} skipped, ${r.deleted.length} deleted — ${r.chunks} chunks.`));
    } else {
      head.append(h('span', {}, status.message || 'Done.'));
    }
    const skipped = (r?.skipped || []).map((s) => h('li', {}, h('code', {}, s.source), ` — ${s.reason}`));
    return [head, skipped.length ? h('ul', { class: 'skipped-list' }, skipped) : null];
  }
}
