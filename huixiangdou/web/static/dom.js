// Building page elements without innerHTML: every text from the server (file names, messages,
// answers) goes in as a text node, so nothing a group member typed can run as markup.
// An element holding data rather than the console's own words carries data-data (see `datum`).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// An element whose text is data (a file name, a message, a server's message), not a catalogue text:
// the page test skips what is inside it when it checks that every visible word is translated.
export function datum(tag, attrs = {}, ...children) {
  return h(tag, { ...attrs, dataset: { ...(attrs?.dataset || {}), data: '' } }, ...children);
}

export function badge(text, kind) {
  return h('span', { class: `badge badge-${kind}` }, text);
}

export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value ?? '—')]));
}
