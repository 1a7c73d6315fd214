// A response message of the /ws protocol as the library hands it to its caller.

/** The bytes of a base64 string. */
function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A response as the library gives it: the status, headers (name -> values) and the body: parsed when
 * JSON, a Uint8Array when binary (sent as base64 with body_encoding "base64"), else text.
 * The library asks for JSON bodies as JSON values (accept_json_body, docs/protocol.md): one parse, not two.
 */
export function reply(message) {
  const headers = message.headers || {};
  const type = (headers['Content-Type'] || [''])[0];
  let body = message.body;
  if (message.body_encoding === 'base64' && typeof body === 'string') {
    body = fromBase64(body);
  } else if (message.body_encoding !== 'json' && type.startsWith('application/json') && typeof body === 'string'
             && body !== '') {
    body = JSON.parse(body);
  }
  return { status: message.status, headers, body };
}
