// Knowledge base: the store's facts, every file in repo_dir with its status, upload (picker or
// drag and drop), delete, the chunks a file became, and the incremental rebuild with its progress.
// An admin also manages the knowledge bases themselves here (knowledge_base_admin.js).

import { api } from '../api.js';
import { BuildProgress } from '../build_progress.js';
import { h, replace, badge, card, facts, datum } from '../dom.js';
import { t } from '../i18n.js';
import { bytes, when, num, seconds } from '../format.js';
import { knowledgeBaseAdmin } from '../knowledge_base_admin.js';
import { waiting } from '../wait.js';

const STATUS = { indexed: 'ok', pending: 'warn', skipped: 'error' };

export async function render(root, ctx) {
  const storeFacts = h('div', { id: 'store-facts' });
  const filesTable = h('table', { id: 'files-table', class: 'table stacked' });
  const summary = h('span', { class: 'muted' });
  const chunkPanel = h('div', { id: 'chunk-panel', class: 'chunk-panel', hidden: true });
  const progressEl = h('div', { id: 'build-progress', class: 'progress' });
  const uploadState = h('div', { id: 'upload-state' });
  const fileInput = h('input', { id: 'file-input', type: 'file', multiple: true });
  const folderInput = h('input', { id: 'upload-folder', type: 'text', placeholder: t('kb.folderPlaceholder'), class: 'narrow' });
  const chosen = h('span', { class: 'muted' }, t('kb.noFiles'));

  const progress = new BuildProgress(progressEl, {
    report: ctx.report,
    onFinish: async (status) => {
      if (status.state === 'done') ctx.toast(t('kb.rebuilt'), 'ok');
      else if (status.state === 'failed') ctx.toast(status.message || t('build.failed'), 'error', { data: Boolean(status.message) });
      else if (status.state === 'cancelled') ctx.toast(t('build.cancelled'), 'ok');
      await load().catch(ctx.report);
    },
  });

  const load = async () => {
    const data = await api.get('/api/kb');
    showStore(storeFacts, data.store);
    progress.setLastBuilt(data.store?.built_at);
    showFiles(filesTable, summary, data.files, { remove, view });
    return data;
  };

  async function upload(files) {
    if (!files.length) {
      ctx.toast(t('kb.chooseFirst'), 'error');
      return;
    }
    const form = new FormData();
    // The server reads the parts as they stream in: the folder must come before the files.
    if (folderInput.value.trim()) form.append('folder', folderInput.value.trim());
    for (const file of files) form.append('file', file, file.name);
    const wait = waiting(t('kb.uploading', { n: files.length }));
    replace(uploadState, wait.el);
    try {
      const res = await api.upload('/api/files', form);
      const refused = res.refused || [];
      if (refused.length) {
        ctx.toast(t('kb.notSaved', { list: refused.map((r) => `${r.name} (${r.reason})`).join('; ') }), 'error', { data: true });
      } else {
        ctx.toast(t('kb.saved', { n: res.saved.length }), 'ok');
      }
      fileInput.value = '';
      chosen.textContent = t('kb.noFiles');
      delete chosen.dataset.data;
      await load();
    } catch (err) {
      ctx.report(err);
    } finally {
      wait.stop();
      replace(uploadState);
    }
  }

  async function remove(path) {
    if (!confirm(t('kb.confirmDelete', { path }))) return;
    try {
      await api.del(`/api/files?path=${encodeURIComponent(path)}`);
      ctx.toast(t('kb.deleted', { path }), 'ok');
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
        h('div', { class: 'panel-head' }, h('h3', {}, datum('span', {}, path), ' ', h('span', { class: 'muted' }, t('kb.chunkCount', { n: data.chunks.length }))),
          h('button', { class: 'ghost', type: 'button', onclick: () => { chunkPanel.hidden = true; } }, t('common.close'))),
        data.chunks.length
          ? h('ol', { class: 'chunks' }, data.chunks.map((c) => h('li', {},
            c.anchor ? datum('div', { class: 'muted' }, c.anchor) : null, datum('pre', { class: 'chunk-text' }, c.text))))
          : h('p', { class: 'muted' }, t('kb.noChunks')));
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
    chosen.textContent = names.length ? names.join(', ') : t('kb.noFiles');
    if (names.length) chosen.dataset.data = '';
    else delete chosen.dataset.data;
  });

  const dropZone = h('div', { id: 'drop-zone', class: 'drop-zone' },
    h('div', { class: 'drop-hint' }, h('span', {}, t('kb.dropHere')), ' ', h('span', { class: 'muted' }, t('kb.types'))),
    h('div', { class: 'row' },
      h('label', { class: 'file-label' }, fileInput, t('kb.chooseFiles')), chosen),
    h('div', { class: 'row' }, folderInput,
      h('button', { id: 'upload-button', type: 'button', onclick: () => upload([...fileInput.files]) }, t('kb.upload'))),
    uploadState);
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
    h('div', { class: 'page-head' }, h('h1', {}, t('title.kb'), ' ', datum('span', { class: 'kb-name' }, ctx.kb)),
      h('p', { class: 'lead' }, t('kb.lead'))),
    h('div', { class: 'grid-2' },
      card(t('kb.store'), storeFacts),
      h('div', { class: 'stack' },
        card(t('kb.addDocuments'), dropZone),
        card(t('kb.build'),
          h('div', { class: 'row first' },
            h('button', { id: 'rebuild-button', type: 'button', onclick: rebuild }, t('kb.rebuild')),
            h('span', { class: 'muted small' }, t('kb.rebuildHint'))),
          progressEl))),
    card(null, h('div', { class: 'panel-head' }, h('h2', {}, t('kb.files')), summary), h('div', { class: 'table-scroll' }, filesTable)),
    chunkPanel,
  );
  if (ctx.knowledgeBases.available && ctx.role() === 'admin') root.append(knowledgeBaseAdmin(ctx));

  const data = await load();
  progress.show(data.build || { state: 'idle' }, data.build?.state === 'running');
  return () => progress.stop();
}

function showStore(el, store) {
  if (!store) {
    replace(el, h('p', { class: 'muted' }, t('kb.noStore')));
    return;
  }
  replace(el, facts([
    [t('kb.fact.model'), datum('code', {}, store.embedding_model)],
    [t('kb.fact.chunks'), String(store.chunks)],
    [t('kb.fact.files'), String(store.files)],
    [t('kb.fact.built'), t('kb.builtIn', { when: when(store.built_at), seconds: seconds(store.build_seconds) })],
    [t('kb.fact.calibrated'), store.calibrated_at ? when(store.calibrated_at) : t('kb.notCalibrated')],
    [t('kb.fact.threshold'), num(store.threshold)],
    [t('kb.fact.repoDir'), datum('code', {}, store.repo_dir)],
    [t('kb.fact.workDir'), datum('code', {}, store.work_dir)],
  ]));
}

function showFiles(table, summary, files, { remove, view }) {
  const counts = { indexed: 0, pending: 0, skipped: 0 };
  for (const f of files) counts[f.status] = (counts[f.status] || 0) + 1;
  summary.textContent = t('kb.summary', { n: files.length, ...counts });
  // Problems first, then what changed lately: after an upload its row is at the top.
  const rank = { skipped: 0, pending: 1, indexed: 2 };
  const ordered = [...files].sort((a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3)
    || String(b.modified).localeCompare(String(a.modified)) || a.path.localeCompare(b.path));
  const head = [t('kb.col.file'), t('kb.col.size'), t('kb.col.modified'), t('kb.col.status'), ''];
  const rows = ordered.map((f) => {
    const label = STATUS[f.status] ? t(`kb.status.${f.status}`) : f.status;
    const detail = f.status === 'indexed' ? h('span', { class: 'status-detail' }, t('kb.chunkCount', { n: f.chunks }))
      : f.status === 'pending' ? h('span', { class: 'status-detail' }, t('kb.rebuildToIndex'))
        : datum('span', { class: 'status-detail' }, f.reason || '');
    return h('tr', { dataset: { path: f.path, status: f.status } },
      h('td', { class: 'path', 'data-label': head[0] }, f.status === 'indexed'
        ? datum('button', { type: 'button', class: 'link', onclick: () => view(f.path), title: t('kb.showChunks') }, f.path)
        : datum('span', {}, f.path)),
      h('td', { class: 'num', 'data-label': head[1] }, bytes(f.size)),
      h('td', { class: 'nowrap', 'data-label': head[2] }, when(f.modified)),
      h('td', { class: 'status', 'data-label': head[3] }, badge(label, STATUS[f.status] || 'muted'), detail),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'delete ghost danger', onclick: () => remove(f.path), title: t('kb.deleteTitle') }, t('common.delete'))));
  });
  replace(table,
    h('thead', {}, h('tr', {}, head.map((text) => h('th', {}, text)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted empty' }, t('kb.empty')))));
}
