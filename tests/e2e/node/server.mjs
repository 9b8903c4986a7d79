// Starts the real `tensoras serve` binary for a test file and stops it afterwards.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The server reads `models/*.toml` and `build/functions/*.wasm` relative to its CWD.
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function binary() {
  const cache = process.env.TENSORAS_CACHE || join(homedir(), '.cache', 'tensoras');
  return process.env.TENSORAS_BIN || join(cache, 'target', 'release', 'tensoras');
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export function newKey() {
  return 'tns_' + randomBytes(32).toString('base64url');
}

export async function startServer(...extraArgs) {
  const dir = await mkdtemp(join(tmpdir(), 'tensoras-node-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const apiKey = newKey();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENSORAS_')));
  env.TENSORAS_DATA_DIR = join(dir, 'data');
  env.TENSORAS_API_KEY = apiKey;
  const logPath = join(dir, 'server.log');
  const log = createWriteStream(logPath);
  await new Promise((ok) => log.on('open', ok));
  const proc = spawn(binary(), ['serve', '--port', String(port), ...extraArgs], {
    cwd: REPO,
    env,
    stdio: ['ignore', log, log],
  });
  let exited = null;
  const exit = new Promise((ok) => proc.on('exit', (code, signal) => ok((exited = { code, signal }))));
  proc.on('error', (err) => (exited = { error: err }));

  const readLog = () => readFile(logPath, 'utf8').catch(() => '');
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`server exited: ${JSON.stringify(exited)}\n${await readLog()}`);
    try {
      const r = await fetch(url + '/health');
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`server did not become healthy in 60 s\n${await readLog()}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }

  return {
    url,
    apiKey,
    readLog,
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
        await exit;
        clearTimeout(timer);
      }
      log.end();
      await rm(dir, { recursive: true, force: true });
      return exited;
    },
  };
}
