// One connection to the gateway's /ws: through a SockJS constructor when given one,
// else the native WebSocket on /ws/websocket (the raw endpoint: one message per frame).

/** The base URL without a trailing slash or /ws. */
export function baseUrl(url) {
  return String(url).replace(/\/+$/, '').replace(/\/ws$/, '');
}

/**
 * Open a transport. `handlers` gets onopen(), onmessage(text) and onclose({code, reason}),
 * each at most once for open and close. Returns {send(text), close(), name()}.
 */
export function openTransport(url, options, handlers) {
  const base = baseUrl(url);
  if (options.SockJS) {
    const sock = new options.SockJS(`${base}${options.path}`, null,
      { ...(options.sockjs || {}), ...(options.transports ? { transports: options.transports } : {}) });
    sock.onopen = () => handlers.onopen();
    sock.onmessage = (e) => handlers.onmessage(e.data);
    sock.onclose = (e) => handlers.onclose({ code: e.code, reason: e.reason });
    return {
      send: (text) => sock.send(text),
      close: () => sock.close(),
      name: () => (typeof sock.transport === 'string' ? sock.transport : 'sockjs'),
    };
  }
  const WebSocketImpl = options.WebSocket || globalThis.WebSocket;
  if (!WebSocketImpl) {
    throw new Error('no WebSocket here: pass options.SockJS (sockjs-client) or options.WebSocket');
  }
  const ws = new WebSocketImpl(`${base.replace(/^http/, 'ws')}${options.path}/websocket`);
  let closed = false;
  ws.onopen = () => handlers.onopen();
  ws.onmessage = (e) => handlers.onmessage(typeof e.data === 'string' ? e.data : String(e.data));
  const ended = (why) => {
    if (!closed) {
      closed = true;
      handlers.onclose(why);
    }
  };
  ws.onclose = (e) => ended({ code: e.code, reason: e.reason });
  // Browsers follow an error with a close; Node 20's WebSocket does not when the connection fails.
  ws.onerror = () => ended({ code: 1006, reason: 'connection failed' });
  return {
    send: (text) => ws.send(text),
    close: () => ws.close(),
    name: () => 'websocket-raw',
  };
}
