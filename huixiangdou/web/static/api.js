// The console's one way to talk to the server: JSON requests carrying the session's CSRF token and
// the chosen knowledge base (?kb=), errors turned into ApiError with a message an admin can act on,
// and SSE read from a fetch stream.

import { t } from './i18n.js';

let csrfToken = null;
let knowledgeBase = 'default';

// The endpoints that answer for one knowledge base: each gets ?kb=<the chosen one>, here and only here.
const KB_SCOPED = ['/api/kb', '/api/chunks', '/api/rebuild', '/api/files', '/api/examples', '/api/calibrate',
  '/api/calibration', '/api/ask', '/api/messages', '/api/integrations'];

export function setCsrf(token) {
  csrfToken = token || null;
}

export function setKnowledgeBase(name) {
  knowledgeBase = name || 'default';
}

export function currentKnowledgeBase() {
  return knowledgeBase;
}

export function withKb(path) {
  const bare = path.split('?')[0];
  if (!KB_SCOPED.some((prefix) => bare === prefix || bare.startsWith(`${prefix}/`))) return path;
  return `${path}${path.includes('?') ? '&' : '?'}kb=${encodeURIComponent(knowledgeBase)}`;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// What the admin should do, for the refusals the contract names; the server's own message otherwise.
function explain(status, code, message) {
  if (code === 'unauthorized' || status === 401) return t('error.unauthorized');
  if (code === 'csrf') return t('error.csrf');
  if (code === 'read_only') return t('error.readOnly');
  if (code === 'forbidden_knowledge_base') return t('error.forbiddenKb', { kb: knowledgeBase });
  if (code === 'unknown_knowledge_base') return t('error.unknownKb', { kb: knowledgeBase });
  return message || t('error.status', { status });
}

async function failure(res) {
  let code = `http_${res.status}`;
  let message = '';
  try {
    const body = await res.json();
    code = body.error?.code || code;
    message = body.error?.message || '';
  } catch {
    // Not our JSON (a proxy's HTML page, say): the status is all we know.
  }
  return new ApiError(res.status, code, explain(res.status, code, message));
}

function headersFor(method, json) {
  const headers = { Accept: 'application/json' };
  if (json) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  return headers;
}

export async function request(method, path, { json, form } = {}) {
  let res;
  try {
    res = await fetch(withKb(path), {
      method,
      headers: headersFor(method, json !== undefined),
      body: form ?? (json !== undefined ? JSON.stringify(json) : undefined),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'network', t('error.network', { detail: err.message }));
  }
  if (!res.ok) throw await failure(res);
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const api = {
  get: (path) => request('GET', path),
  post: (path, json = {}) => request('POST', path, { json }),
  put: (path, json = {}) => request('PUT', path, { json }),
  del: (path, json) => request('DELETE', path, { json }),
  upload: (path, form) => request('POST', path, { form }),
};

// POST `json` to `path` and yield {event, data} for each server-sent event as it arrives.
export async function* streamEvents(path, json) {
  let res;
  try {
    res = await fetch(withKb(path), {
      method: 'POST',
      headers: { ...headersFor('POST', true), Accept: 'text/event-stream' },
      body: JSON.stringify(json),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'network', t('error.network', { detail: err.message }));
  }
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = parseEvent(block);
      if (event) yield event;
    }
  }
  const last = parseEvent(buffer);
  if (last) yield last;
}

function parseEvent(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (!data.length) return null;
  const text = data.join('\n');
  try {
    return { event: name, data: JSON.parse(text) };
  } catch {
    return { event: name, data: text };
  }
}
