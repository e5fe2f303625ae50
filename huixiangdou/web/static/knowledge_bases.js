// Which knowledge bases there are and which one the pages show: loaded from GET /api/knowledge-bases,
// the choice remembered in localStorage and handed to api.js (the one place that adds ?kb=).
// A server without that route (older than several knowledge bases) means one, "default", and no choice.

import { api, setKnowledgeBase, currentKnowledgeBase } from './api.js';

const STORAGE_KEY = 'hxd.kb';
export const DEFAULT_KB = 'default';

export const knowledgeBases = {
  list: [{ name: DEFAULT_KB, groups: [], source: 'config', has_operator: false, files: null, chunks: null }],
  available: false, // the server lists knowledge bases (and so can create, delete and bind them)
  role: null,
  kb: null,
};

function remembered() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function chooseKnowledgeBase(name) {
  setKnowledgeBase(name);
  try {
    localStorage.setItem(STORAGE_KEY, name);
  } catch {
    // not remembered; this page still switches
  }
}

// Load the list; an operator is held to their own knowledge base. Returns true when the choice changed.
export async function loadKnowledgeBases(session, report) {
  const before = currentKnowledgeBase();
  try {
    const data = await api.get('/api/knowledge-bases');
    knowledgeBases.list = Array.isArray(data.knowledge_bases) && data.knowledge_bases.length
      ? data.knowledge_bases : knowledgeBases.list;
    knowledgeBases.available = true;
    knowledgeBases.role = data.role || null;
    knowledgeBases.kb = data.kb || null;
  } catch (err) {
    // 404: a console without several knowledge bases; 401: reads need a login first (protect_api).
    knowledgeBases.available = false;
    knowledgeBases.list = [{ name: DEFAULT_KB, groups: [], source: 'config', has_operator: false, files: null, chunks: null }];
    if (err.status !== 404 && err.status !== 401) report(err);
  }
  const names = knowledgeBases.list.map((k) => k.name);
  const own = session.role === 'operator' ? session.kb : (knowledgeBases.role === 'operator' ? knowledgeBases.kb : null);
  let next;
  if (own) next = own;
  else if (names.includes(remembered())) next = remembered();
  else if (names.includes(DEFAULT_KB)) next = DEFAULT_KB;
  else next = names[0] || DEFAULT_KB;
  setKnowledgeBase(next);
  return next !== before;
}

// The names the switcher may offer: an operator's own only; every one otherwise.
export function switchable(session) {
  if (session.role === 'operator' && session.kb) return [session.kb];
  return knowledgeBases.list.map((k) => k.name);
}

// The groups bound to each knowledge base, as [{group, kb, frontend}] (a group may be a string or an object).
export function groupBindings() {
  const out = [];
  for (const kb of knowledgeBases.list) {
    for (const g of kb.groups || []) {
      if (typeof g === 'string') out.push({ group: g, kb: kb.name, frontend: '' });
      else if (g && typeof g === 'object') out.push({ group: String(g.id ?? g.group ?? g.group_id ?? ''), kb: kb.name, frontend: g.frontend || '' });
    }
  }
  return out;
}
