// Small DOM helpers.  Every value reaches the page as text: nothing here
// parses HTML, so a job's name, data or error can never become markup.

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) {
    throw new Error(`the page has no element #${id}`);
  }
  return node;
}

// Build an element: props sets attributes (never event handlers) and
// children are nodes or strings, the strings added as text nodes.
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("on")) {
      throw new Error(`h() sets no event handler attribute (${name})`);
    }
    if (name === "class") {
      node.className = value;
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ""));
  }
  return node;
}

// Change a node's text only when it differs, so a refresh that changes
// nothing keeps the reader's text selection and causes no repaint.
export function setText(node, value) {
  const text = String(value ?? "");
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

export function setAttr(node, name, value) {
  const text = value === null || value === undefined ? null : String(value);
  if (text === null) {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== text) {
    node.setAttribute(name, text);
  }
}

export function show(node, visible) {
  if (node.hidden === visible) {
    node.hidden = !visible;
  }
}

// Make tbody hold one row per item, in order, reusing the row already
// shown for the same key so focus, selection and hover survive a refresh.
export function syncRows(tbody, items, keyOf, build, update) {
  const existing = new Map();
  for (const row of tbody.rows) {
    existing.set(row.dataset.key, row);
  }
  let cursor = tbody.firstElementChild;
  for (const item of items) {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) {
      existing.delete(key);
    } else {
      row = build(item);
      row.dataset.key = key;
    }
    update(row, item);
    if (row !== cursor) {
      tbody.insertBefore(row, cursor);
    } else {
      cursor = cursor.nextElementSibling;
    }
  }
  for (const row of existing.values()) {
    row.remove();
  }
}
