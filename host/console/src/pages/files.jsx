import { useState, useEffect, useRef } from 'preact/hooks';
import { get, del, api, blobUrl } from '../api.js';
import { ConfirmButton, EmptyRow, ErrorBanner, fmtBytes, fmtTime, useAction } from '../ui.jsx';

const PURPOSES = ['user_data', 'assistants', 'batch', 'fine-tune', 'vision', 'evals', 'knowledge_base'];

export function Files() {
  const { error, setError, running, run } = useAction();
  const [files, setFiles] = useState(null);
  const [file, setFile] = useState(null);
  const [purpose, setPurpose] = useState('user_data');
  const [fileInputKey, setFileInputKey] = useState(0);
  const urls = useRef([]);

  const refresh = async () => setFiles((await get('/v1/files')).data);
  useEffect(() => {
    run('load', refresh);
    // Object URLs hold the downloaded bytes until revoked.
    return () => urls.current.forEach((u) => URL.revokeObjectURL(u));
  }, []);

  const upload = (e) => {
    e.preventDefault();
    run('upload', async () => {
      const data = new FormData();
      data.append('purpose', purpose);
      data.append('file', file, file.name);
      await api('POST', '/v1/files', { body: data });
      setFile(null);
      setFileInputKey((k) => k + 1);
      await refresh();
    });
  };

  // A plain link would go without the Authorization header, so fetch the bytes with the
  // key and save them through a temporary object URL.
  const download = (f) =>
    run(`download-${f.id}`, async () => {
      const url = await blobUrl(`/v1/files/${encodeURIComponent(f.id)}/content`);
      urls.current.push(url);
      const a = document.createElement('a');
      a.href = url;
      a.download = f.filename;
      document.body.appendChild(a);
      a.click();
      a.remove();
    });

  const remove = (id) =>
    run(`delete-${id}`, async () => {
      await del(`/v1/files/${encodeURIComponent(id)}`);
      setFiles((fs) => fs.filter((f) => f.id !== id));
    });

  return (
    <div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <form class="card form-row" onSubmit={upload}>
        <label>
          File
          <input type="file" key={fileInputKey} data-testid="files-upload-file" onChange={(e) => setFile(e.currentTarget.files[0] || null)} />
        </label>
        <label>
          Purpose
          <select data-testid="files-purpose" value={purpose} onChange={(e) => setPurpose(e.currentTarget.value)}>
            {PURPOSES.map((p) => (
              <option value={p}>{p}</option>
            ))}
          </select>
        </label>
        <button type="submit" data-testid="files-upload" disabled={running.upload || !file}>
          {running.upload ? 'Uploading…' : 'Upload'}
        </button>
      </form>

      <table data-testid="files-table">
        <thead>
          <tr>
            <th>Filename</th>
            <th>ID</th>
            <th>Purpose</th>
            <th class="num">Bytes</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {files && files.length === 0 && <EmptyRow cols={6}>No files.</EmptyRow>}
          {(files || []).map((f) => (
            <tr key={f.id} data-file={f.id}>
              <td>{f.filename}</td>
              <td>
                <code>{f.id}</code>
              </td>
              <td>{f.purpose}</td>
              <td class="num" title={fmtBytes(f.bytes)}>
                {f.bytes}
              </td>
              <td>{fmtTime(f.created_at)}</td>
              <td class="actions">
                <a
                  href={`/v1/files/${encodeURIComponent(f.id)}/content`}
                  data-testid="files-download"
                  onClick={(e) => {
                    e.preventDefault();
                    download(f);
                  }}
                >
                  Download
                </a>
                <ConfirmButton testid="files-delete" label="Delete" confirmLabel="Confirm delete" disabled={running[`delete-${f.id}`]} onConfirm={() => remove(f.id)} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
