// Knowledge base: the store's facts, every file in repo_dir with its status, upload (picker or
// drag and drop), delete, the chunks a file became, and the incremental rebuild with its progress.

import { api } from '../api.js';
import { BuildProgress } from '../build_progress.js';
import { h, replace, badge, card, facts } from '../dom.js';
import { bytes, when, num, seconds } from '../format.js';

const STATUS = {
  indexed: ['indexed', 'ok'],
  pending: ['pending', 'warn'],
  skipped: ['skipped', 'error'],
};

export async function render(root, ctx) {
  const storeFacts = h('div', { id: 'store-facts' });
  const filesTable = h('table', { id: 'files-table', class: 'table' });
  const summary = h('span', { class: 'muted' });
  const chunkPanel = h('div', { id: 'chunk-panel', class: 'chunk-panel', hidden: true });
  const progressEl = h('div', { id: 'build-progress', class: 'progress' });
  const fileInput = h('input', { id: 'file-input', type: 'file', multiple: true });
  const folderInput = h('input', { id: 'upload-folder', type: 'text', placeholder: 'sub-folder (optional)', class: 'narrow' });
  const chosen = h('span', { class: 'muted' }, 'No files chosen.');

  const load = async () => {
    const data = await api.get('/api/kb');
    showStore(storeFacts, data.store);
    showFiles(filesTable, summary, data.files, { remove, view });
    return data;
  };

  const progress = new BuildProgress(progressEl, {
    report: ctx.report,
    onFinish: async (status) => {
      if (status.state === 'done') ctx.toast('The store is rebuilt; answers use it now.', 'ok');
      else if (status.state === 'failed') ctx.toast(status.message || 'The build failed.', 'error');
      else if (status.state === 'cancelled') ctx.toast('Build cancelled; the previous store still answers.', 'ok');
      await load().catch(ctx.report);
    },
  });

  async function upload(files) {
    if (!files.length) {
      ctx.toast('Choose or drop one or more files first.', 'error');
      return;
    }
    const form = new FormData();
    // The server reads the parts as they stream in: the folder must come before the files.
    if (folderInput.value.trim()) form.append('folder', folderInput.value.trim());
    for (const file of files) form.append('file', file, file.name);
    try {
      const res = await api.upload('/api/files', form);
      const refused = res.refused || [];
      if (refused.length) {
        ctx.toast(`Not saved: ${refused.map((r) => `${r.name} (${r.reason})`).join('; ')}`, 'error');
      } else {
        ctx.toast(`Saved ${res.saved.length} file(s). Press Rebuild to index them.`, 'ok');
      }
      fileInput.value = '';
      chosen.textContent = 'No files chosen.';
      await load();
    } catch (err) {
      ctx.report(err);
    }
  }

  async function remove(path) {
    if (!confirm(`Delete ${path} from the knowledge base folder? The next rebuild drops its chunks.`)) return;
    try {
      await api.del(`/api/files?path=${encodeURIComponent(path)}`);
      ctx.toast(`Deleted ${path}. Rebuild to drop it from answers.`, 'ok');
      await load();
    } catch (err) {
      ctx.report(err);
    }
  }

  async function view(path) {
    try {
      const data = await api.get(`/api/chunks?path=${encodeURIComponent(path)}`);
      chunkPanel.hidden = false;
      replace(chunkPanel,
        h('div', { class: 'panel-head' }, h('h3', {}, `${path} — ${data.chunks.length} chunk(s)`),
          h('button', { class: 'ghost', type: 'button', onclick: () => { chunkPanel.hidden = true; } }, 'Close')),
        data.chunks.length
          ? h('ol', { class: 'chunks' }, data.chunks.map((c) => h('li', {},
            c.anchor ? h('div', { class: 'muted' }, c.anchor) : null, h('pre', { class: 'chunk-text' }, c.text))))
          : h('p', { class: 'muted' }, 'The store holds no chunks for this file.'));
      chunkPanel.scrollIntoView({ block: 'start' });
    } catch (err) {
      ctx.report(err);
    }
  }

  async function rebuild() {
    try {
      progress.show(await api.post('/api/rebuild', { full: false }), true);
    } catch (err) {
      ctx.report(err);
    }
  }

  fileInput.addEventListener('change', () => {
    const names = [...fileInput.files].map((f) => f.name);
    chosen.textContent = names.length ? names.join(', ') : 'No files chosen.';
  });

  const dropZone = h('div', { id: 'drop-zone', class: 'drop-zone' },
    h('div', { class: 'drop-hint' }, 'Drop files here', h('span', { class: 'muted' },
      ' — Markdown, text, PDF, Word, Excel, PowerPoint, HTML, CSV, source code')),
    h('div', { class: 'row' },
      h('label', { class: 'file-label' }, fileInput, 'Choose files'), chosen),
    h('div', { class: 'row' }, folderInput,
      h('button', { id: 'upload-button', type: 'button', onclick: () => upload([...fileInput.files]) }, 'Upload')));
  for (const name of ['dragenter', 'dragover']) {
    dropZone.addEventListener(name, (event) => { event.preventDefault(); dropZone.classList.add('over'); });
  }
  dropZone.addEventListener('dragleave', () => dropZone.classList.remove('over'));
  dropZone.addEventListener('drop', (event) => {
    event.preventDefault();
    dropZone.classList.remove('over');
    upload([...event.dataTransfer.files]);
  });

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Knowledge base'),
      h('p', { class: 'lead' }, 'The documents the bot answers from. Upload or delete files, then rebuild: unchanged files are reused.')),
    h('div', { class: 'grid-2' },
      card('Store', storeFacts),
      h('div', { class: 'stack' },
        card('Add documents', dropZone),
        card('Build',
          h('div', { class: 'row first' },
            h('button', { id: 'rebuild-button', type: 'button', onclick: rebuild }, 'Rebuild (incremental)'),
            h('span', { class: 'muted small' }, 'Parses new and changed files, reuses the rest, recalibrates.')),
          progressEl))),
    card(null, h('div', { class: 'panel-head' }, h('h2', {}, 'Files'), summary), filesTable),
    chunkPanel,
  );

  const data = await load();
  progress.show(data.build || { state: 'idle' }, data.build?.state === 'running');
  return () => progress.stop();
}

function showStore(el, store) {
  if (!store) {
    replace(el, h('p', { class: 'muted' }, 'No store is built yet: add files and press Rebuild.'));
    return;
  }
  replace(el, facts([
    ['Embedding model', h('code', {}, store.embedding_model)],
    ['Chunks', String(store.chunks)],
    ['Files', String(store.files)],
    ['Built', `${when(store.built_at)} (${seconds(store.build_seconds)})`],
    ['Calibrated', store.calibrated_at ? when(store.calibrated_at) : 'not calibrated'],
    ['Reject threshold', num(store.threshold)],
    ['Documents folder', h('code', {}, store.repo_dir)],
    ['Store folder', h('code', {}, store.work_dir)],
  ]));
}

function showFiles(table, summary, files, { remove, view }) {
  const counts = { indexed: 0, pending: 0, skipped: 0 };
  for (const f of files) counts[f.status] = (counts[f.status] || 0) + 1;
  summary.textContent = `${files.length} files: ${counts.indexed} indexed, ${counts.pending} pending, ${counts.skipped} skipped`;
  // Problems first, then what changed lately: after an upload its row is at the top.
  const rank = { skipped: 0, pending: 1, indexed: 2 };
  const ordered = [...files].sort((a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3)
    || String(b.modified).localeCompare(String(a.modified)) || a.path.localeCompare(b.path));
  const rows = ordered.map((f) => {
    const [label, kind] = STATUS[f.status] || [f.status, 'muted'];
    const detail = f.status === 'indexed' ? `${f.chunks} chunk${f.chunks === 1 ? '' : 's'}`
      : f.status === 'pending' ? 'rebuild to index' : (f.reason || '');
    return h('tr', { dataset: { path: f.path, status: f.status } },
      h('td', { class: 'path' }, f.status === 'indexed'
        ? h('button', { type: 'button', class: 'link', onclick: () => view(f.path), title: 'Show its chunks' }, f.path)
        : f.path),
      h('td', { class: 'num' }, bytes(f.size)),
      h('td', { class: 'nowrap' }, when(f.modified)),
      h('td', { class: 'status' }, badge(label, kind), h('span', { class: 'status-detail' }, detail)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'delete ghost danger', onclick: () => remove(f.path), title: 'Delete this file' }, 'Delete')));
  });
  replace(table,
    h('thead', {}, h('tr', {}, ['File', 'Size', 'Modified', 'Status', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted empty' }, 'repo_dir holds no files yet.'))));
}
