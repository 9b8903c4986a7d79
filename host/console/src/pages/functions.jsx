import { useState, useEffect } from 'preact/hooks';
import { get, post, del, api } from '../api.js';
import { ConfirmButton, EmptyRow, ErrorBanner, fmtBytes, fmtTime, useAction } from '../ui.jsx';

const KINDS = ['tool', 'http', 'chat'];

function Detail({ name, onDeleted, onChanged }) {
  const { error, setError, running, run } = useAction();
  const [fn, setFn] = useState(null);
  const [versions, setVersions] = useState([]);
  const [logs, setLogs] = useState(null);
  const path = `/v1/functions/${encodeURIComponent(name)}`;

  const loadLogs = () =>
    run('logs', async () => {
      setLogs(await get(`${path}/logs?limit=50`));
    });
  const load = () =>
    run('load', async () => {
      const [f, v] = await Promise.all([get(path), get(`${path}/versions`)]);
      setFn(f);
      setVersions(v.data.slice().sort((a, b) => b.version - a.version));
    });
  useEffect(() => {
    load();
    loadLogs();
  }, [name]);

  const rollback = (version) =>
    run(`rollback-${version}`, async () => {
      await post(`${path}/rollback`, { version });
      await load();
      onChanged();
    });

  const remove = () =>
    run('delete', async () => {
      await del(path);
      onDeleted();
    });

  // The server keeps the newest invocations last; show the newest first.
  const entries = logs ? logs.data.slice().reverse() : [];

  return (
    <div class="card detail" data-testid="fn-detail">
      <div class="row spread">
        <h2>
          {name} {fn && <span class="muted">v{fn.version} · {fn.kind}</span>}
        </h2>
        <ConfirmButton testid="fn-delete" label="Delete function" confirmLabel="Confirm delete" disabled={running.delete} onConfirm={remove} />
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {fn && (
        <div class="muted small">
          {fn.description} · sha256 <code>{fn.sha256.slice(0, 12)}</code> · {fmtBytes(fn.size_bytes)}
          {fn.url && (
            <>
              {' '}
              · served at <code>{fn.url}</code>
            </>
          )}
        </div>
      )}

      <h3>Versions</h3>
      <table data-testid="fn-versions">
        <thead>
          <tr>
            <th>Version</th>
            <th>Deployed</th>
            <th>sha256</th>
            <th>Description</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version} data-version={v.version} data-active={String(v.active)}>
              <td>
                v{v.version} {v.active && <span class="badge ok">active</span>}
              </td>
              <td>{fmtTime(v.created_at)}</td>
              <td>
                <code>{v.sha256.slice(0, 12)}</code>
              </td>
              <td>{v.description}</td>
              <td>
                {!v.active && (
                  <button type="button" class="secondary" data-testid="fn-rollback" disabled={running[`rollback-${v.version}`]} onClick={() => rollback(v.version)}>
                    Roll back to v{v.version}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <div class="row spread">
        <h3>
          Logs{' '}
          {logs && (
            <span class="muted small">
              {logs.stats.invocations} invocations, {logs.stats.errors} errors, mean {logs.stats.mean_duration_ms.toFixed(1)} ms
            </span>
          )}
        </h3>
        <button type="button" class="secondary" data-testid="fn-logs-refresh" disabled={running.logs} onClick={loadLogs}>
          Refresh logs
        </button>
      </div>
      <div data-testid="fn-logs">
        {logs && entries.length === 0 && <div class="muted">No invocations yet.</div>}
        {entries.map((l) => (
          <details class="log" data-testid="fn-log" key={l.id} data-status={l.status}>
            <summary>
              {new Date(l.started_at_ms).toISOString().replace('T', ' ').slice(0, 23)}{' '}
              <span class={`badge ${l.status === 'ok' ? 'ok' : 'error'}`}>{l.status}</span> {l.duration_ms.toFixed(1)} ms
              {l.error && <span class="error-text"> {l.error}</span>}
            </summary>
            <pre>{l.output || '(no output)'}</pre>
          </details>
        ))}
      </div>
    </div>
  );
}

export function Functions() {
  const { error, setError, running, run } = useAction();
  const [fns, setFns] = useState(null);
  const [selected, setSelected] = useState(null);
  const [form, setForm] = useState({ name: '', kind: 'tool', manifest: '' });
  const [file, setFile] = useState(null);
  const [deployed, setDeployed] = useState(null);
  const [fileInputKey, setFileInputKey] = useState(0);

  const load = () =>
    run('load', async () => {
      setFns((await get('/v1/functions')).data);
    });
  useEffect(() => {
    load();
  }, []);

  const pickFile = (e) => {
    const f = e.currentTarget.files[0] || null;
    setFile(f);
    // calc.wasm is usually deployed as "calc": offer that until the user types a name.
    if (f && !form.name) setForm((s) => ({ ...s, name: f.name.replace(/\.wasm$/i, '').replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) }));
  };

  const deploy = (e) => {
    e.preventDefault();
    run('deploy', async () => {
      const data = new FormData();
      data.append('file', file, file.name);
      if (form.manifest.trim()) {
        let manifest;
        try {
          manifest = JSON.parse(form.manifest);
        } catch (err) {
          throw new Error(`The manifest is not valid JSON: ${err.message}`);
        }
        data.append('manifest', JSON.stringify(manifest));
      }
      // The server applies these parts over the manifest's own fields.
      if (form.name.trim()) data.append('name', form.name.trim());
      if (form.kind) data.append('kind', form.kind);
      const fn = await api('POST', '/v1/functions', { body: data });
      setDeployed(fn);
      setFile(null);
      setFileInputKey((k) => k + 1);
      setForm((s) => ({ ...s, name: '' }));
      setFns((await get('/v1/functions')).data);
    });
  };

  return (
    <div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <form class="card" onSubmit={deploy}>
        <h2>Deploy</h2>
        <div class="form-row">
          <label>
            Component (.wasm)
            <input type="file" key={fileInputKey} accept=".wasm,application/wasm" data-testid="fn-file" onChange={pickFile} />
          </label>
          <label>
            Name
            <input data-testid="fn-name" value={form.name} pattern="[A-Za-z0-9_\-]{1,64}" onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
          </label>
          <label>
            Kind
            <select data-testid="fn-kind" value={form.kind} onChange={(e) => setForm({ ...form, kind: e.currentTarget.value })}>
              {KINDS.map((k) => (
                <option value={k}>{k}</option>
              ))}
            </select>
          </label>
        </div>
        <label>
          Manifest (optional JSON; name and kind above override it)
          <textarea
            data-testid="fn-manifest"
            rows={4}
            class="mono"
            placeholder='{"description": "...", "limits": {"timeout_ms": 5000}, "grants": {"kv": true}}'
            value={form.manifest}
            onInput={(e) => setForm({ ...form, manifest: e.currentTarget.value })}
          />
        </label>
        <button type="submit" data-testid="fn-deploy" disabled={running.deploy || !file}>
          {running.deploy ? 'Deploying…' : 'Deploy'}
        </button>
        {deployed && (
          <div class="banner ok" data-testid="fn-deployed">
            Deployed {deployed.name} version {deployed.version}
          </div>
        )}
      </form>

      <table data-testid="functions-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Version</th>
            <th>Description</th>
            <th>Deployed</th>
          </tr>
        </thead>
        <tbody>
          {fns && fns.length === 0 && <EmptyRow cols={5}>No functions deployed.</EmptyRow>}
          {(fns || []).map((f) => (
            <tr key={f.name} data-function={f.name} class={selected === f.name ? 'selected' : ''}>
              <td>
                <a href="#/functions" class="fn-open" onClick={(e) => {
                  e.preventDefault();
                  setSelected(f.name);
                }}>
                  {f.name}
                </a>
              </td>
              <td>{f.kind}</td>
              <td>{f.version}</td>
              <td>{f.description}</td>
              <td>{fmtTime(f.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      {selected && (
        <Detail
          key={selected}
          name={selected}
          onChanged={load}
          onDeleted={() => {
            setSelected(null);
            load();
          }}
        />
      )}
    </div>
  );
}
