// The API reference, rendered from /openapi.json: every operation with its parameters, body,
// responses and an example, and a form that calls it from this page (same origin, so no CORS).
const $ = (id) => document.getElementById(id);
let spec = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function resolve(schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    schema = schema.$ref.split('/').slice(1).reduce((node, key) => node[key], spec);
  }
  return schema || {};
}

/** An example value of a schema: its own example, else one built from its properties. */
function example(schema, depth = 0) {
  schema = resolve(schema);
  if (schema.example !== undefined) return schema.example;
  if (depth > 6) return null;
  if (schema.enum) return schema.enum[0];
  switch (schema.type) {
    case 'object': {
      const out = {};
      const required = new Set(schema.required || []);
      for (const [name, prop] of Object.entries(schema.properties || {})) {
        if (required.has(name) || depth === 0) out[name] = example(prop, depth + 1);
      }
      return out;
    }
    case 'array': return [example(schema.items || {}, depth + 1)];
    case 'integer': return schema.minimum || 1;
    case 'number': return 1.5;
    case 'boolean': return true;
    default: return schema.format === 'date-time' ? '2026-11-30T12:00:00Z' : 'string';
  }
}

function parameterRows(parameters) {
  const table = el('table', {}, el('tr', {}, el('th', {}, 'parameter'), el('th', {}, 'in'), el('th', {}, 'description')));
  for (const p of parameters) {
    table.append(el('tr', {}, el('td', {}, p.name + (p.required ? ' *' : '')), el('td', {}, p.in),
      el('td', {}, p.description || '')));
  }
  return table;
}

function operationCard(path, method, op) {
  const id = op.operationId;
  const parameters = [...(spec.paths[path].parameters || []), ...(op.parameters || [])].map(resolve);
  const card = el('section', { class: 'operation', id },
    el('h3', {}, el('span', { class: `method ${method.toUpperCase()}` }, method.toUpperCase()), ' ', path,
      el('span', { class: 'muted' }, `  ${id}`)),
    el('p', {}, op.summary || ''));
  if (op.description) card.append(el('p', { class: 'muted' }, op.description));
  if (parameters.length) card.append(parameterRows(parameters));
  const form = el('form', { 'data-operation': id });
  for (const p of parameters.filter((q) => q.in !== 'header')) {
    form.append(el('label', {}, `${p.name} `, el('input', { name: p.name, 'data-in': p.in, placeholder: p.in })), ' ');
  }
  const body = op.requestBody && resolve(op.requestBody).content['application/json'];
  if (body) {
    card.append(el('div', {}, 'Body example:'), el('pre', {}, JSON.stringify(example(body.schema), null, 2)));
    form.append(el('textarea', { name: '__body', rows: '5' }, JSON.stringify(example(body.schema), null, 2)));
  }
  const responses = el('table', {}, el('tr', {}, el('th', {}, 'status'), el('th', {}, 'meaning')));
  for (const [code, response] of Object.entries(op.responses || {})) {
    responses.append(el('tr', {}, el('td', {}, code), el('td', {}, resolve(response).description || '')));
  }
  card.append(responses);
  form.append(el('button', { type: 'submit' }, 'Send'));
  const result = el('div', { class: 'result' });
  form.addEventListener('submit', (e) => { e.preventDefault(); call(method.toUpperCase(), path, op, form, result); });
  card.append(form, result);
  return card;
}

async function call(method, path, op, form, result) {
  let target = path;
  const query = new URLSearchParams();
  for (const input of form.querySelectorAll('input')) {
    if (!input.value) continue;
    if (input.dataset.in === 'path') target = target.replace(`{${input.name}}`, encodeURIComponent(input.value));
    else if (input.dataset.in === 'query') query.set(input.name, input.value);
  }
  if ([...query].length) target += `?${query}`;
  const headers = {};
  const token = $('token').value.trim();
  const needsToken = op.security === undefined || op.security.length > 0;
  if (token && needsToken) headers.Authorization = `Bearer ${token}`;
  const bodyInput = form.querySelector('textarea');
  let body;
  if (bodyInput && bodyInput.value.trim()) {
    headers['Content-Type'] = 'application/json';
    body = bodyInput.value;
  }
  const reply = await fetch(target, { method, headers, body });
  const text = await reply.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
  result.replaceChildren(el('div', { class: 'status' }, `${reply.status} ${reply.statusText}`), el('pre', {}, shown));
  if (method === 'POST' && path === '/tokens' && reply.status === 201) $('token').value = JSON.parse(text).token.value;
}

async function main() {
  spec = await (await fetch('/openapi.json')).json();
  $('version').textContent = `${spec.info.title} ${spec.info.version}`;
  $('intro').textContent = spec.info.description || '';
  const main = $('operations');
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ['get', 'post', 'put', 'delete', 'patch']) {
      if (!item[method]) continue;
      main.append(operationCard(path, method, item[method]));
      $('toc').append(el('a', { href: `#${item[method].operationId}` }, item[method].operationId));
    }
  }
  document.body.dataset.ready = 'true';
}

main();
