// sockjs-node's echo server, the peer bench/echo.py measures ours against: node sockjs_echo.js PORT
// It prints "listening PORT" once it accepts connections.
'use strict';
const http = require('http');
const sockjs = require('sockjs');

const port = Number(process.argv[2] || 0);
const echo = sockjs.createServer({ log: () => {}, disconnect_delay: 5000, heartbeat_delay: 25000 });
echo.on('connection', (conn) => {
  conn.on('data', (message) => conn.write(message));
});
const server = http.createServer();
echo.installHandlers(server, { prefix: '/echo' });
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
