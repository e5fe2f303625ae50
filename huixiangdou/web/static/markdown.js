// The answers' Markdown as page elements: paragraphs, quotes, lists, headings, code blocks, inline
// code, bold, italic, links and [n] citations. Every piece of text becomes a text node and nothing
// is parsed as HTML, so an answer holding <script> or <img onerror> shows those characters and runs
// nothing; a link is made only for http(s) and mailto addresses.
// Why our own and not marked + DOMPurify: answers use a small part of Markdown, and building nodes
// (never innerHTML) leaves no HTML for a sanitiser to clean; a link to a citation needs a hook anyway.

const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);
const FENCE = /^\s{0,3}(```|~~~)/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
// Inline, earliest match wins: `code`, [n], [text](url), **bold**, *italic*, a bare http(s) address.
const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\[(\d{1,3})\]|\[([^\]\n]+)\]\(\s*([^)\s]+)\s*\)|\*\*(?=\S)([\s\S]+?)\*\*|\*(?=[^\s*])([^*\n]+?)\*|(https?:\/\/[^\s<>()（）"']*[^\s<>()（）"'.,;:!?。，；：！？、])/;

function el(tag, ...children) {
  const node = document.createElement(tag);
  for (const child of children) node.append(child);
  return node;
}

// The address if it is safe to follow (http, https, mailto), else null.
export function safeHref(raw) {
  try {
    const url = new URL(raw, window.location.href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function inline(text, options) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) {
      out.push(document.createTextNode(rest));
      break;
    }
    if (m.index) out.push(document.createTextNode(rest.slice(0, m.index)));
    rest = rest.slice(m.index + m[0].length);
    if (m[2] !== undefined) {
      out.push(el('code', m[2]));
    } else if (m[3] !== undefined) {
      out.push((options.cite && options.cite(Number(m[3]), m[0])) || document.createTextNode(m[0]));
    } else if (m[4] !== undefined) {
      out.push(link(m[5], inline(m[4], options)));
    } else if (m[6] !== undefined) {
      out.push(el('strong', ...inline(m[6], options)));
    } else if (m[7] !== undefined) {
      out.push(el('em', ...inline(m[7], options)));
    } else {
      out.push(link(m[8], [document.createTextNode(m[8])]));
    }
  }
  return out;
}

function link(raw, children) {
  const href = safeHref(raw);
  if (!href) return el('span', ...children); // javascript:, data: …: the words without the link
  const a = el('a', ...children);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  return a;
}

// Lines with a line break between them (a chat answer means its line breaks).
function lines(list, options) {
  const out = [];
  list.forEach((line, i) => {
    if (i) out.push(el('br'));
    out.push(...inline(line.trim(), options));
  });
  return out;
}

function blocks(source, options, depth) {
  const out = [];
  const rows = source.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < rows.length) {
    const row = rows[i];
    if (!row.trim()) { i += 1; continue; }
    const fence = row.match(FENCE);
    if (fence) {
      const body = [];
      i += 1;
      while (i < rows.length && !rows[i].trim().startsWith(fence[1])) body.push(rows[i++]);
      i += 1; // the closing fence (absent while an answer still streams in)
      out.push(el('pre', el('code', body.join('\n'))));
      continue;
    }
    if (QUOTE.test(row) && depth < 8) {
      const inner = [];
      while (i < rows.length && rows[i].trim() && QUOTE.test(rows[i])) inner.push(rows[i++].match(QUOTE)[1]);
      out.push(el('blockquote', ...blocks(inner.join('\n'), options, depth + 1)));
      continue;
    }
    const heading = row.match(HEADING);
    if (heading) {
      out.push(el('h4', ...inline(heading[2], options)));
      i += 1;
      continue;
    }
    if (RULE.test(row)) {
      out.push(el('hr'));
      i += 1;
      continue;
    }
    const item = row.match(ITEM);
    if (item) {
      const ordered = /\d/.test(item[2]);
      const list = el(ordered ? 'ol' : 'ul');
      if (ordered && parseInt(item[2], 10) !== 1) list.start = parseInt(item[2], 10);
      while (i < rows.length) {
        const m = rows[i].match(ITEM);
        if (!m || /\d/.test(m[2]) !== ordered) break;
        const body = [m[3]];
        i += 1;
        // Continuation lines: indented, not a new item.
        while (i < rows.length && rows[i].trim() && /^\s{2,}/.test(rows[i]) && !ITEM.test(rows[i])) body.push(rows[i++]);
        list.append(el('li', ...lines(body, options)));
      }
      out.push(list);
      continue;
    }
    const para = [];
    while (i < rows.length && rows[i].trim() && !FENCE.test(rows[i]) && !QUOTE.test(rows[i])
      && !ITEM.test(rows[i]) && !HEADING.test(rows[i])) para.push(rows[i++]);
    if (!para.length) para.push(rows[i++]);
    out.push(el('p', ...lines(para, options)));
  }
  return out;
}

// The nodes for `source`; options.cite(n, text) may return a node for the citation [n].
export function renderMarkdown(source, options = {}) {
  return blocks(String(source || ''), options, 0);
}

// One line of plain words for a preview: the Markdown's text without its marks.
export function plainText(source) {
  return renderMarkdown(source).map((node) => node.textContent).join(' ').replace(/\s+/g, ' ').trim();
}
