import { useState, useEffect, useRef } from 'preact/hooks';
import { get, post, del, api } from '../api.js';
import { ConfirmButton, EmptyRow, ErrorBanner, fmtTime, useAction } from '../ui.jsx';

const BUSY = new Set(['pending', 'processing']);

function Sources({ sources, names }) {
  return (
    <table data-testid="kb-sources">
      <thead>
        <tr>
          <th>Source</th>
          <th>File</th>
          <th>Status</th>
          <th class="num">Chunks</th>
          <th>Updated</th>
        </tr>
      </thead>
      <tbody>
        {sources.length === 0 && <EmptyRow cols={5}>No data sources yet. Upload documents above.</EmptyRow>}
        {sources.map((s) => (
          <tr key={s.id} data-source={s.id} data-status={s.status}>
            <td>
              <code>{s.id}</code>
            </td>
            <td>{names[s.file_id] || (s.metadata && s.metadata.url) || s.file_id}</td>
            <td>
              <span class={`badge ${s.status === 'completed' ? 'ok' : s.status === 'failed' ? 'error' : 'wait'}`}>{s.status}</span>
              {s.error && <div class="error-text small">{s.error.message}</div>}
            </td>
            <td class="num">
              {s.chunks_done}
              {s.chunks_total != null && s.chunks_total !== s.chunks_done ? ` / ${s.chunks_total}` : ''}
            </td>
            <td>{fmtTime(s.updated_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Detail({ kb, onDeleted, onChanged }) {
  const { error, setError, running, run } = useAction();
  const [sources, setSources] = useState([]);
  const [names, setNames] = useState({});
  const [files, setFiles] = useState([]);
  const [fileInputKey, setFileInputKey] = useState(0);
  const [query, setQuery] = useState({ text: '', type: 'hybrid', topK: 5 });
  const [results, setResults] = useState(null);
  const base = `/v1/knowledge-bases/${encodeURIComponent(kb.id)}`;

  const loadSources = async () => {
    const list = await get(`${base}/data-sources`);
    setSources(list.data);
    return list.data;
  };
  const loadNames = async () => {
    const list = await get('/v1/files');
    setNames(Object.fromEntries(list.data.map((f) => [f.id, f.filename])));
  };

  useEffect(() => {
    run('load', () => Promise.all([loadSources(), loadNames()]));
  }, [kb.id]);

  // Poll once a second while ingestion runs; the effect's cleanup stops it when the
  // sources settle or the page goes away.
  const ingesting = sources.some((s) => BUSY.has(s.status));
  const wasIngesting = useRef(false);
  useEffect(() => {
    if (!ingesting) {
      if (wasIngesting.current) onChanged();
      wasIngesting.current = false;
      return undefined;
    }
    wasIngesting.current = true;
    const timer = setInterval(() => {
      loadSources().catch((e) => setError(e));
    }, 1000);
    return () => clearInterval(timer);
  }, [ingesting]);

  const upload = (e) => {
    e.preventDefault();
    run('upload', async () => {
      const ids = [];
      for (const f of files) {
        const data = new FormData();
        data.append('purpose', 'knowledge_base');
        data.append('file', f, f.name);
        const uploaded = await api('POST', '/v1/files', { body: data });
        ids.push(uploaded.id);
        setNames((n) => ({ ...n, [uploaded.id]: uploaded.filename }));
      }
      await post(`${base}/data-sources`, { file_ids: ids });
      setFiles([]);
      setFileInputKey((k) => k + 1);
      await loadSources();
      onChanged();
    });
  };

  const retrieve = (e) => {
    e.preventDefault();
    run('retrieve', async () => {
      const body = { query: query.text, search_type: query.type };
      if (Number.isFinite(query.topK)) body.top_k = query.topK;
      setResults((await post(`${base}/retrieve`, body)).data);
    });
  };

  const remove = () =>
    run('delete', async () => {
      await del(base);
      onDeleted();
    });

  return (
    <div class="card detail" data-testid="kb-detail">
      <div class="row spread">
        <h2>
          {kb.name} <span class="muted small">{kb.id}</span>
        </h2>
        <ConfirmButton testid="kb-delete" label="Delete knowledge base" confirmLabel="Confirm delete" disabled={running.delete} onConfirm={remove} />
      </div>
      <div class="muted small">
        {kb.description ? `${kb.description} · ` : ''}embedding model {kb.embedding_model} · {kb.chunk_count} chunks
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />

      <h3>Documents</h3>
      <form class="form-row" onSubmit={upload}>
        <label>
          Files (PDF, DOCX, TXT, MD, HTML, CSV, JSON)
          <input type="file" multiple key={fileInputKey} data-testid="kb-upload-file" onChange={(e) => setFiles([...e.currentTarget.files])} />
        </label>
        <button type="submit" data-testid="kb-upload" disabled={running.upload || files.length === 0}>
          {running.upload ? 'Uploading…' : 'Upload and add'}
        </button>
        {ingesting && <span class="muted small">Ingesting…</span>}
      </form>
      <Sources sources={sources} names={names} />

      <h3>Retrieve</h3>
      <form class="form-row" onSubmit={retrieve}>
        <label class="wide">
          Query
          <input data-testid="kb-query" value={query.text} onInput={(e) => setQuery({ ...query, text: e.currentTarget.value })} />
        </label>
        <label>
          Search
          <select data-testid="kb-search-type" value={query.type} onChange={(e) => setQuery({ ...query, type: e.currentTarget.value })}>
            <option value="vector">vector</option>
            <option value="keyword">keyword</option>
            <option value="hybrid">hybrid</option>
          </select>
        </label>
        <label>
          Top k
          <input type="number" min="1" max="100" data-testid="kb-top-k" value={query.topK} onInput={(e) => setQuery({ ...query, topK: e.currentTarget.valueAsNumber })} />
        </label>
        <button type="submit" data-testid="kb-retrieve" disabled={running.retrieve || !query.text.trim()}>
          {running.retrieve ? 'Searching…' : 'Retrieve'}
        </button>
      </form>
      {results && results.length === 0 && <div class="muted">No matches.</div>}
      {(results || []).map((r) => (
        <div class="result" data-testid="kb-result" key={r.id}>
          <div>
            <b>{r.filename || r.file_id || r.id}</b> <span class="muted small">chunk {r.chunk_index} · score {Number(r.score).toFixed(4)}</span>
          </div>
          <pre>{r.text}</pre>
        </div>
      ))}
    </div>
  );
}

export function KnowledgeBases() {
  const { error, setError, running, run } = useAction();
  const [kbs, setKbs] = useState(null);
  const [selected, setSelected] = useState(null);
  const [form, setForm] = useState({ name: '', description: '' });

  const refresh = async () => setKbs((await get('/v1/knowledge-bases')).data);
  const load = () => run('load', refresh);
  useEffect(() => {
    load();
  }, []);

  const create = (e) => {
    e.preventDefault();
    run('create', async () => {
      const body = { name: form.name.trim() };
      if (form.description.trim()) body.description = form.description.trim();
      const kb = await post('/v1/knowledge-bases', body);
      setForm({ name: '', description: '' });
      await refresh();
      setSelected(kb.id);
    });
  };

  const current = (kbs || []).find((k) => k.id === selected);

  return (
    <div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <form class="card form-row" onSubmit={create}>
        <label>
          Name
          <input data-testid="kb-name" value={form.name} maxLength={256} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
        </label>
        <label class="wide">
          Description
          <input data-testid="kb-description" value={form.description} onInput={(e) => setForm({ ...form, description: e.currentTarget.value })} />
        </label>
        <button type="submit" data-testid="kb-create" disabled={running.create || !form.name.trim()}>
          {running.create ? 'Creating…' : 'Create knowledge base'}
        </button>
      </form>

      <table data-testid="kb-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>ID</th>
            <th>Description</th>
            <th class="num">Sources</th>
            <th class="num">Chunks</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {kbs && kbs.length === 0 && <EmptyRow cols={6}>No knowledge bases.</EmptyRow>}
          {(kbs || []).map((k) => (
            <tr key={k.id} data-kb={k.id} class={`clickable ${selected === k.id ? 'selected' : ''}`} onClick={() => setSelected(k.id)}>
              <td>
                <a href="#/knowledge-bases" onClick={(e) => e.preventDefault()}>
                  {k.name}
                </a>
              </td>
              <td>
                <code>{k.id}</code>
              </td>
              <td>{k.description}</td>
              <td class="num">{k.data_source_counts.total}</td>
              <td class="num">{k.chunk_count}</td>
              <td>{fmtTime(k.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      {current && (
        <Detail
          key={current.id}
          kb={current}
          onChanged={() => refresh().catch((e) => setError(e))}
          onDeleted={() => {
            setSelected(null);
            load();
          }}
        />
      )}
    </div>
  );
}
