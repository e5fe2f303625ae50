// The console's one way to talk to the server: JSON requests carrying the session's CSRF token,
// errors turned into ApiError with a message an admin can act on, and SSE read from a fetch stream.

let csrfToken = null;

export function setCsrf(token) {
  csrfToken = token || null;
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
  if (code === 'unauthorized' || status === 401) return `Needs the admin token — log in (top right). ${message || ''}`.trim();
  if (code === 'csrf') return 'Your login has expired for this page — log in again.';
  if (code === 'read_only') return message || 'The console is read-only: set [web] admin_token or HUIXIANGDOU_ADMIN_TOKEN.';
  return message || `The server answered ${status}.`;
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
    res = await fetch(path, {
      method,
      headers: headersFor(method, json !== undefined),
      body: form ?? (json !== undefined ? JSON.stringify(json) : undefined),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'network', `Cannot reach the console server (${err.message}). Is it still running?`);
  }
  if (!res.ok) throw await failure(res);
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const api = {
  get: (path) => request('GET', path),
  post: (path, json = {}) => request('POST', path, { json }),
  put: (path, json = {}) => request('PUT', path, { json }),
  del: (path) => request('DELETE', path),
  upload: (path, form) => request('POST', path, { form }),
};

// POST `json` to `path` and yield {event, data} for each server-sent event as it arrives.
export async function* streamEvents(path, json) {
  let res;
  try {
    res = await fetch(path, {
      method: 'POST',
      headers: { ...headersFor('POST', true), Accept: 'text/event-stream' },
      body: JSON.stringify(json),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'network', `Cannot reach the console server (${err.message}).`);
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
