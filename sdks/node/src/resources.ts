// The resources `Tensoras` adds. Every request goes through the openai client's own
// get/post/patch/delete, so retries, timeouts, auth and errors are its own.

import OpenAI, { APIPromise, toFile, type Uploadable } from 'openai';
import { Page, type PagePromise } from 'openai/pagination';
import { APIResource } from 'openai/resource';
import { Models as OpenAIModels } from 'openai/resources/models';
import type { Stream } from 'openai/streaming';

import type * as T from './types.js';

type RequestOptions = OpenAI.RequestOptions;

/** `template` with each `{}` replaced by a part, percent-encoded as one path segment. */
function path(template: string, ...parts: string[]): string {
  let i = 0;
  return template.replace(/\{\}/g, () => encodeURIComponent(parts[i++]!));
}

/** A poll gave up before ingestion finished. */
export class IngestionTimeout extends Error {
  override name = 'IngestionTimeout';
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function poll<R>(look: () => Promise<R>, done: (r: R) => boolean, what: (r: R) => string, opts: T.PollOptions) {
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  for (;;) {
    const r = await look();
    if (done(r)) return r;
    if (Date.now() > deadline) throw new IngestionTimeout(`${what(r)} after ${opts.timeoutMs ?? 600_000} ms`);
    await sleep(opts.pollIntervalMs ?? 500);
  }
}

/** `/v1/knowledge-bases`: documents embedded and searchable, for RAG chat and retrieval. */
export class KnowledgeBases extends APIResource {
  dataSources: DataSources = new DataSources(this._client);

  create(body: T.KnowledgeBaseCreateParams, options?: RequestOptions): APIPromise<T.KnowledgeBase> {
    return this._client.post('/knowledge-bases', { body, ...options });
  }

  retrieve(knowledgeBaseId: string, options?: RequestOptions): APIPromise<T.KnowledgeBase> {
    return this._client.get(path('/knowledge-bases/{}', knowledgeBaseId), options);
  }

  update(knowledgeBaseId: string, body: T.KnowledgeBaseUpdateParams, options?: RequestOptions): APIPromise<T.KnowledgeBase> {
    return this._client.patch(path('/knowledge-bases/{}', knowledgeBaseId), { body, ...options });
  }

  list(options?: RequestOptions): PagePromise<Page<T.KnowledgeBase>, T.KnowledgeBase> {
    return this._client.getAPIList('/knowledge-bases', Page<T.KnowledgeBase>, options);
  }

  delete(knowledgeBaseId: string, options?: RequestOptions): APIPromise<T.Deleted> {
    return this._client.delete(path('/knowledge-bases/{}', knowledgeBaseId), options);
  }

  /** `POST /v1/knowledge-bases/{id}/retrieve`: the chunks that best match `query`. */
  search(knowledgeBaseId: string, body: T.KnowledgeBaseSearchParams, options?: RequestOptions): APIPromise<T.RetrieveResult> {
    return this._client.post(path('/knowledge-bases/{}/retrieve', knowledgeBaseId), { body, ...options });
  }

  /** Waits until no data source is pending or processing; check `data_source_counts.failed`. */
  poll(knowledgeBaseId: string, opts: T.PollOptions = {}): Promise<T.KnowledgeBase> {
    return poll(
      () => this.retrieve(knowledgeBaseId),
      (kb) => kb.data_source_counts.pending + kb.data_source_counts.processing === 0,
      (kb) => `${knowledgeBaseId} still ingesting ${JSON.stringify(kb.data_source_counts)}`,
      opts,
    );
  }
}

/** `/v1/knowledge-bases/{id}/data-sources`: the files a knowledge base is built from. */
export class DataSources extends APIResource {
  /** Adds an uploaded file (`file_id`) or a document to download (`url`); ingests in the background. */
  create(knowledgeBaseId: string, body: T.DataSourceCreateParams, options?: RequestOptions): APIPromise<T.DataSource> {
    return this._client.post(path('/knowledge-bases/{}/data-sources', knowledgeBaseId), { body, ...options });
  }

  async createMany(
    knowledgeBaseId: string,
    body: { file_ids: string[]; metadata?: T.Metadata | null },
    options?: RequestOptions,
  ): Promise<T.DataSource[]> {
    const added = await this._client.post<{ data: T.DataSource[] }>(
      path('/knowledge-bases/{}/data-sources', knowledgeBaseId),
      { body, ...options },
    );
    return added.data;
  }

  /** Uploads `file` (purpose `knowledge_base`), adds it and waits until it is ingested. */
  async uploadAndPoll(
    knowledgeBaseId: string,
    file: Uploadable,
    opts: T.PollOptions & { metadata?: T.Metadata } = {},
  ): Promise<T.DataSource> {
    const uploaded = await this._client.files.create({ file, purpose: 'knowledge_base' as OpenAI.FilePurpose });
    const source = await this.create(knowledgeBaseId, { file_id: uploaded.id, metadata: opts.metadata ?? null });
    return this.poll(knowledgeBaseId, source.id, opts);
  }

  list(knowledgeBaseId: string, options?: RequestOptions): PagePromise<Page<T.DataSource>, T.DataSource> {
    return this._client.getAPIList(path('/knowledge-bases/{}/data-sources', knowledgeBaseId), Page<T.DataSource>, options);
  }

  retrieve(knowledgeBaseId: string, dataSourceId: string, options?: RequestOptions): APIPromise<T.DataSource> {
    return this._client.get(path('/knowledge-bases/{}/data-sources/{}', knowledgeBaseId, dataSourceId), options);
  }

  delete(knowledgeBaseId: string, dataSourceId: string, options?: RequestOptions): APIPromise<T.Deleted> {
    return this._client.delete(path('/knowledge-bases/{}/data-sources/{}', knowledgeBaseId, dataSourceId), options);
  }

  /** Waits until the source is `completed` or `failed` (then `error` says why). */
  poll(knowledgeBaseId: string, dataSourceId: string, opts: T.PollOptions = {}): Promise<T.DataSource> {
    return poll(
      () => this.retrieve(knowledgeBaseId, dataSourceId),
      (s) => s.status === 'completed' || s.status === 'failed',
      (s) => `${dataSourceId} still ${s.status}`,
      opts,
    );
  }
}

/** Chat completions grounded in knowledge bases, with typed `citations`. */
export class Rag extends APIResource {
  create(body: T.RagCreateParamsNonStreaming, options?: RequestOptions): APIPromise<T.ChatCompletion>;
  create(body: T.RagCreateParamsStreaming, options?: RequestOptions): APIPromise<Stream<T.ChatCompletionChunk>>;
  create(
    body: T.RagCreateParamsNonStreaming | T.RagCreateParamsStreaming,
    options?: RequestOptions,
  ): APIPromise<T.ChatCompletion> | APIPromise<Stream<T.ChatCompletionChunk>> {
    return this._client.post('/chat/completions', { body, ...options, stream: body.stream ?? false }) as
      | APIPromise<T.ChatCompletion>
      | APIPromise<Stream<T.ChatCompletionChunk>>;
  }
}

export class Rerank extends APIResource {
  /** `POST /v1/rerank`: the documents ordered by relevance to `query`. */
  create(body: T.RerankCreateParams, options?: RequestOptions): APIPromise<T.RerankResponse> {
    return this._client.post('/rerank', { body, ...options });
  }
}

/** `/v1/functions`: WebAssembly components deployed as tools, HTTP endpoints or chat models. */
export class Functions extends APIResource {
  /** Deploys a `.wasm` component (a path, its bytes or a Blob); a redeploy of `name` is a new version. */
  async deploy(
    file: string | Uint8Array | Blob,
    params: T.FunctionDeployParams,
    options?: RequestOptions,
  ): Promise<T.TensorasFunction> {
    const form = new FormData();
    form.set('file', await wasmFile(file, params.name));
    form.set('manifest', JSON.stringify({ kind: 'tool', ...params }));
    return this._client.post('/functions', { body: form, ...options });
  }

  list(options?: RequestOptions): PagePromise<Page<T.TensorasFunction>, T.TensorasFunction> {
    return this._client.getAPIList('/functions', Page<T.TensorasFunction>, options);
  }

  retrieve(name: string, options?: RequestOptions): APIPromise<T.TensorasFunction> {
    return this._client.get(path('/functions/{}', name), options);
  }

  delete(name: string, options?: RequestOptions): APIPromise<T.Deleted> {
    return this._client.delete(path('/functions/{}', name), options);
  }

  /** Calls a tool function with its arguments. Arguments it refuses reject with `BadRequestError`,
   * a tool that fails with `UnprocessableEntityError`. */
  call(name: string, args: Record<string, unknown> = {}, options?: RequestOptions): APIPromise<T.ToolResult> {
    return this._client.post(path('/functions/{}/call', name), { body: args, ...options });
  }

  /** Sends a request to an HTTP function; resolves to its `Response`. An answer of 4xx/5xx
   * rejects with the openai error for that status. */
  invoke(name: string, req: T.FunctionInvokeOptions = {}, options?: RequestOptions): Promise<Response> {
    const sub = req.path ? '/' + req.path.replace(/^\/+/, '') : '';
    const body = typeof req.body === 'string' ? new TextEncoder().encode(req.body) : (req.body ?? undefined);
    return this._client
      .request({
        method: (req.method ?? 'POST').toLowerCase() as 'post',
        path: path('/functions/{}/invoke', name) + sub,
        ...(body !== undefined && { body }),
        ...(req.query && { query: req.query }),
        ...(req.headers && { headers: req.headers }),
        ...options,
      })
      .asResponse();
  }

  versions(name: string, options?: RequestOptions): PagePromise<Page<T.FunctionVersion>, T.FunctionVersion> {
    return this._client.getAPIList(path('/functions/{}/versions', name), Page<T.FunctionVersion>, options);
  }

  rollback(name: string, version: number, options?: RequestOptions): APIPromise<T.TensorasFunction> {
    return this._client.post(path('/functions/{}/rollback', name), { body: { version }, ...options });
  }

  logs(name: string, query: { after?: number; limit?: number } = {}, options?: RequestOptions): APIPromise<T.FunctionLogs> {
    return this._client.get(path('/functions/{}/logs', name), { query, ...options });
  }
}

async function wasmFile(file: string | Uint8Array | Blob, name: string): Promise<File> {
  if (typeof file === 'string') {
    const { readFile } = await import('node:fs/promises');
    const { basename } = await import('node:path');
    return toFile(await readFile(file), basename(file), { type: 'application/wasm' });
  }
  return toFile(file, `${name}.wasm`, { type: 'application/wasm' });
}

export class Usage extends APIResource {
  /** `GET /v1/usage`: tokens, requests and cost, grouped by `day`, `model`, `key`, `tenant`. */
  retrieve(params: T.UsageParams = {}, options?: RequestOptions): APIPromise<T.UsageReport> {
    const day = (d: string | Date | undefined) => (d instanceof Date ? d.toISOString().slice(0, 10) : d);
    const query = {
      ...params,
      start: day(params.start),
      end: day(params.end),
      group_by: params.group_by?.join(','),
    };
    return this._client.get('/usage', { query, ...options });
  }
}

export class Keys extends APIResource {
  /** A new key; its secret is in `key` of this answer only. */
  create(body: T.KeyCreateParams, options?: RequestOptions): APIPromise<T.APIKey> {
    return this._client.post('/keys', { body, ...options });
  }

  list(query: { tenant?: string } = {}, options?: RequestOptions): PagePromise<Page<T.APIKey>, T.APIKey> {
    return this._client.getAPIList('/keys', Page<T.APIKey>, { query, ...options });
  }

  update(keyId: string, body: { plan: string | null }, options?: RequestOptions): APIPromise<T.APIKey> {
    return this._client.patch(path('/keys/{}', keyId), { body, ...options });
  }

  delete(keyId: string, options?: RequestOptions): APIPromise<T.Deleted> {
    return this._client.delete(path('/keys/{}', keyId), options);
  }
}

export class Tenants extends APIResource {
  retrieve(name: string, options?: RequestOptions): APIPromise<T.Tenant> {
    return this._client.get(path('/tenants/{}', name), options);
  }

  /** Operators only; `null` resets a field, leaving it out keeps it. */
  update(name: string, body: T.TenantUpdateParams, options?: RequestOptions): APIPromise<T.Tenant> {
    return this._client.patch(path('/tenants/{}', name), { body, ...options });
  }
}

/** OpenAI's models resource, answering Tensoras' `Model` (kind, context length, aliases, pricing). */
export class Models extends OpenAIModels {
  override retrieve(model: string, options?: RequestOptions): APIPromise<T.Model> {
    return this._client.get(path('/models/{}', model), options);
  }

  override list(options?: RequestOptions): PagePromise<Page<T.Model>, T.Model> {
    return this._client.getAPIList('/models', Page<T.Model>, options);
  }
}
