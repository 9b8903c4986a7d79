import { useState, useEffect } from 'preact/hooks';
import { get, post, patch, del } from '../api.js';
import { ConfirmButton, EmptyRow, ErrorBanner, fmtTime, useAction } from '../ui.jsx';

const ROLES = ['member', 'admin', 'operator'];
const PLANS = ['free', 'developer', 'pro', 'enterprise', 'unlimited'];

function NewKey({ created, onDismiss }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied(true);
    } catch {
      // Clipboard access needs a secure context; selecting the text still lets the user copy.
      const el = document.querySelector('[data-testid=new-key-secret]');
      if (el) getSelection().selectAllChildren(el);
    }
  };
  return (
    <div class="card notice">
      <div>
        New key <b>{created.name}</b> ({created.id}). Copy it now: it will not be shown again.
      </div>
      <div class="row">
        <code class="secret" data-testid="new-key-secret">{created.key}</code>
        <button type="button" onClick={copy}>
          {copied ? 'Copied' : 'Copy'}
        </button>
        <button type="button" class="secondary" data-testid="new-key-dismiss" onClick={onDismiss}>
          Dismiss
        </button>
      </div>
    </div>
  );
}

export function Keys() {
  const { error, setError, running, run } = useAction();
  const [keys, setKeys] = useState(null);
  const [form, setForm] = useState({ name: '', role: 'member', plan: '', scopes: '' });
  const [created, setCreated] = useState(null);

  const load = () =>
    run('load', async () => {
      const list = await get('/v1/keys');
      setKeys(list.data);
    });
  useEffect(() => {
    load();
  }, []);

  const field = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });

  const create = (e) => {
    e.preventDefault();
    run('create', async () => {
      const body = { name: form.name.trim(), role: form.role };
      const scopes = form.scopes.split(',').map((s) => s.trim()).filter(Boolean);
      if (scopes.length) body.scopes = scopes;
      if (form.plan) body.plan = form.plan;
      const key = await post('/v1/keys', body);
      setCreated(key);
      setForm({ ...form, name: '', scopes: '' });
      const list = await get('/v1/keys');
      setKeys(list.data);
    });
  };

  const setPlan = (id, plan) =>
    run(`plan-${id}`, async () => {
      const updated = await patch(`/v1/keys/${encodeURIComponent(id)}`, { plan: plan || null });
      setKeys((ks) => ks.map((k) => (k.id === id ? { ...k, ...updated, key: undefined } : k)));
    });

  const revoke = (id) =>
    run(`revoke-${id}`, async () => {
      await del(`/v1/keys/${encodeURIComponent(id)}`);
      setKeys((ks) => ks.filter((k) => k.id !== id));
    });

  return (
    <div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {created && <NewKey created={created} onDismiss={() => setCreated(null)} />}

      <form class="card form-row" onSubmit={create}>
        <label>
          Name
          <input data-testid="key-name" value={form.name} onInput={field('name')} required maxLength={256} />
        </label>
        <label>
          Role
          <select data-testid="key-role" value={form.role} onChange={field('role')}>
            {ROLES.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Plan
          <select data-testid="key-plan" value={form.plan} onChange={field('plan')}>
            <option value="">default</option>
            {PLANS.map((p) => (
              <option value={p}>{p}</option>
            ))}
          </select>
        </label>
        <label class="wide">
          Scopes
          <input
            data-testid="key-scopes"
            value={form.scopes}
            onInput={field('scopes')}
            placeholder="comma-separated, e.g. functions:deploy"
          />
        </label>
        <button type="submit" data-testid="key-create" disabled={running.create || !form.name.trim()}>
          {running.create ? 'Creating…' : 'Create key'}
        </button>
      </form>

      <table data-testid="keys-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>ID</th>
            <th>Tenant</th>
            <th>Role</th>
            <th>Plan</th>
            <th>Scopes</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {keys && keys.length === 0 && <EmptyRow cols={8}>No keys.</EmptyRow>}
          {(keys || []).map((k) => (
            <tr key={k.id} data-key-id={k.id}>
              <td>{k.name}</td>
              <td>
                <code>{k.id}</code>
              </td>
              <td>{k.tenant}</td>
              <td>{k.role}</td>
              <td>
                <select
                  data-testid="key-plan-select"
                  value={k.plan || ''}
                  disabled={running[`plan-${k.id}`]}
                  onChange={(e) => setPlan(k.id, e.currentTarget.value)}
                >
                  <option value="">default</option>
                  {/* A plan from the operator's plans file may not be one of the built-in names. */}
                  {[...PLANS, ...(k.plan && !PLANS.includes(k.plan) ? [k.plan] : [])].map((p) => (
                    <option value={p}>{p}</option>
                  ))}
                </select>
              </td>
              <td>{(k.scopes || []).join(', ')}</td>
              <td>{fmtTime(k.created_at)}</td>
              <td>
                <ConfirmButton
                  testid="key-revoke"
                  label="Revoke"
                  confirmLabel="Confirm revoke"
                  disabled={running[`revoke-${k.id}`]}
                  onConfirm={() => revoke(k.id)}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {running.load && !keys && <p class="muted">Loading…</p>}
    </div>
  );
}
