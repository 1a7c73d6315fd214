// Real gateways for the library's tests: `gateway serve` processes on free loopback ports, and
// a small SMTP client to mail them. GATEWAY_PYTHON names the Python that has the gateway installed.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const PASSWORD = 'correct horse battery';
const PYTHON = process.env.GATEWAY_PYTHON || 'python3';

/** A port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolve once `check()` is true, checking every 20 ms, for at most `timeout` ms. */
export async function until(check, timeout = 10000, what = 'a condition') {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A gateway on its own ports and SQLite file. `restart()` stops it and starts it again on the same
 * ports and data (clients reconnect to the same URL); `stop()` ends it for good.
 */
export async function startGateway(extraArgs = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'gateway-client-'));
  const port = await freePort();
  const smtpPort = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child = null;
  let log = '';

  async function start() {
    child = spawn(PYTHON, ['-m', 'gateway', 'serve', '--port', String(port), '--smtp', `127.0.0.1:${smtpPort}`,
      '--store', `sqlite:${dir}/gateway.db`, '--argon2-memory', '1024', '--log-level', 'warning', ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (chunk) => { log = (log + chunk).slice(-20000); });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await until(async () => {
      if (child.exitCode !== null) throw new Error(`gateway exited: ${log}`);
      try {
        return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })).status === 200;
      } catch (e) {
        return false;
      }
    }, 20000, 'the gateway to start');
    return { exited }; // wrapped: an async function returning a promise would wait for it
  }

  let { exited } = await start();
  return {
    url,
    port,
    smtpPort,
    log: () => log,
    /** Freeze the process (SIGSTOP): connections stay up, nothing is answered. */
    pause() { child.kill('SIGSTOP'); },
    resume() { child.kill('SIGCONT'); },
    async restart() {
      child.kill('SIGTERM');
      await exited;
      ({ exited } = await start());
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Send one message over SMTP; resolves with the server's last reply, rejects on a refusal or no server. */
export function smtpSend(port, to, subject, body = 'hello') {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const steps = [
      'EHLO client.example', 'MAIL FROM:<sender@example.org>', `RCPT TO:<${to}>`, 'DATA',
      `From: sender@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\n${body}\r\n.`, 'QUIT',
    ];
    let buffer = '';
    let step = -1;
    let done = false;
    const fail = (error) => { if (!done) { done = true; socket.destroy(); reject(error); } };
    socket.setEncoding('utf8');
    socket.setTimeout(10000, () => fail(new Error('SMTP: no answer in 10 s')));
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('SMTP: the connection closed mid-way'))); // a gateway going down
    socket.on('data', (data) => {
      buffer += data;
      const lines = buffer.split('\r\n');
      buffer = lines.pop();
      for (const line of lines) {
        if (line[3] === '-') continue; // a continued multi-line reply
        const code = Number(line.slice(0, 3));
        if (code >= 400) {
          fail(new Error(`SMTP: ${line}`));
          return;
        }
        step += 1;
        if (step < steps.length) socket.write(`${steps[step]}\r\n`);
        else { done = true; socket.end(); resolve(line); }
      }
    });
  });
}
