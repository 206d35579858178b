// Building the page from values without ever parsing them as HTML: every string becomes a
// text node or an attribute value, so a webhook description like `<script>` shows as text.

/** An element with `props` (attributes, `on*` listeners, `class`) and `children`. */
export function h(tag, props, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.setAttribute('class', value);
    else if (name === 'checked' || name === 'disabled' || name === 'value') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends nodes and strings (as text) to `el`, skipping null, undefined and false. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces what `el` holds with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A time as the reader's locale shows it, or a dash. */
export function when(rfc3339) {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? rfc3339 : d.toLocaleString();
}

/** A `<time>` element for an RFC 3339 string. */
export function time(rfc3339) {
  return rfc3339 ? h('time', { datetime: rfc3339 }, when(rfc3339)) : '—';
}

/** A table in a scrollable, focusable box. Each cell carries its column's heading, which
 * narrow screens show beside the value when rows become stacked cards. */
export function table(caption, headings, rows) {
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headings[i]) cell.dataset.label = headings[i];
    });
  }
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption },
    h('table', null,
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', null, h('tr', null, headings.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows)));
}

/** A message region: `role=alert` for errors, `status` otherwise. */
export function notice(kind, ...children) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, children);
}

/** A button that copies `text` and says so. */
export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'secondary' }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select the text and copy it';
    }
  });
  return button;
}

/** Asks a yes/no question in a modal dialog; resolves true on confirm. */
export function confirmDialog(question, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-q' },
      h('form', { method: 'dialog' },
        h('p', { id: 'confirm-q' }, question),
        h('div', { class: 'actions' },
          h('button', { value: 'cancel', class: 'secondary', autofocus: true }, 'Cancel'),
          h('button', { value: 'confirm', class: 'danger' }, confirmLabel))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
