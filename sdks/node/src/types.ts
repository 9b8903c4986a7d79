// Typed shapes of what Tensoras adds to the OpenAI API (as its `/openapi.json` states them).

import type OpenAI from 'openai';

export type SearchType = 'vector' | 'keyword' | 'hybrid';
export type Metadata = Record<string, unknown>;

// --- Knowledge bases ---------------------------------------------------------------------

export interface ChunkingStrategyParam {
  type?: 'recursive' | 'fixed_size' | 'semantic';
  chunk_size?: number;
  chunk_overlap?: number;
}

export interface ChunkingStrategy {
  type: 'recursive' | 'fixed_size' | 'semantic';
  chunk_size: number;
  chunk_overlap: number;
}

/** A knowledge base's data sources by status. */
export interface DataSourceCounts {
  pending: number;
  processing: number;
  completed: number;
  failed: number;
  total: number;
}

export interface KnowledgeBase {
  id: string;
  object: 'knowledge_base';
  name: string;
  description?: string | null;
  embedding_model: string;
  chunking_strategy: ChunkingStrategy;
  metadata: Metadata;
  created_at: number;
  updated_at: number;
  data_source_counts: DataSourceCounts;
  chunk_count: number;
}

export interface KnowledgeBaseCreateParams {
  name: string;
  description?: string | null;
  /** An installed embedding model; the server's default when left out. */
  embedding_model?: string | null;
  chunking_strategy?: ChunkingStrategyParam | null;
  metadata?: Metadata | null;
}

export interface KnowledgeBaseUpdateParams {
  name?: string;
  description?: string | null;
  chunking_strategy?: ChunkingStrategyParam | null;
  metadata?: Metadata | null;
}

export interface Deleted {
  id: string;
  object: string;
  deleted: boolean;
}

/** A file attached to a knowledge base, with its ingestion's progress. */
export interface DataSource {
  id: string;
  object: 'knowledge_base.data_source';
  knowledge_base_id: string;
  type: 'file';
  file_id: string;
  status: 'pending' | 'processing' | 'completed' | 'failed';
  /** Why it failed; `null` unless `status` is `failed`. */
  error?: { message: string } | null;
  chunks_total?: number | null;
  chunks_done: number;
  metadata: Metadata;
  created_at: number;
  updated_at: number;
}

/** One uploaded file (`file_id`) or a document to download (`url`). */
export type DataSourceCreateParams =
  | { file_id: string; url?: never; metadata?: Metadata | null }
  | { url: string; file_id?: never; metadata?: Metadata | null };

export interface KnowledgeBaseSearchParams {
  query: string;
  top_k?: number;
  search_type?: SearchType;
  min_score?: number;
  filters?: Record<string, unknown>;
  include_metadata?: boolean;
}

export interface RetrievedChunk {
  object: 'knowledge_base.chunk';
  id: string;
  score: number;
  text?: string | null;
  file_id?: string | null;
  filename?: string | null;
  data_source_id?: string | null;
  chunk_index?: number | null;
  metadata?: Metadata;
}

/** The chunks a retrieval found, best first. */
export interface RetrieveResult {
  object: 'list';
  knowledge_base_id: string;
  query: string;
  search_type: SearchType;
  data: RetrievedChunk[];
}

export interface PollOptions {
  /** Milliseconds between two looks (500 by default). */
  pollIntervalMs?: number;
  /** Milliseconds before giving up with an `IngestionTimeout` (600,000 by default). */
  timeoutMs?: number;
}

// --- RAG chat --------------------------------------------------------------------------

export interface RetrievalOptions {
  top_k?: number;
  search_type?: SearchType;
  filters?: Record<string, unknown>;
  min_score?: number;
}

/** A knowledge base chunk a RAG answer's prompt held, numbered as the model saw it. */
export interface Citation {
  index: number;
  /** The file's name. */
  source: string;
  file_id: string;
  knowledge_base_id: string;
  chunk_index: number;
  text: string;
  score: number;
}

export interface RagParams {
  knowledge_bases: string[];
  retrieval_options?: RetrievalOptions;
}

export type RagCreateParamsNonStreaming = OpenAI.Chat.ChatCompletionCreateParamsNonStreaming & RagParams;
export type RagCreateParamsStreaming = OpenAI.Chat.ChatCompletionCreateParamsStreaming & RagParams;

/** OpenAI's chat completion with the `citations` of a RAG answer. */
export interface ChatCompletion extends OpenAI.Chat.ChatCompletion {
  citations?: Citation[];
}

/** A streamed chunk; the first one of a RAG answer carries its `citations`. */
export interface ChatCompletionChunk extends OpenAI.Chat.ChatCompletionChunk {
  citations?: Citation[];
}

// --- Rerank ----------------------------------------------------------------------------

export interface RerankCreateParams {
  model: string;
  query: string;
  documents: Array<string | { text: string }>;
  top_n?: number;
  return_documents?: boolean;
}

export interface RerankResult {
  /** Position of the document in the request. */
  index: number;
  relevance_score: number;
  /** With `return_documents: true`. */
  document?: { text: string } | null;
}

export interface RerankResponse {
  object: 'list';
  /** Most relevant first. */
  results: RerankResult[];
  model: string;
  usage?: { total_tokens: number };
}

// --- Functions -------------------------------------------------------------------------

export type FunctionKind = 'tool' | 'http' | 'chat';

export interface FunctionLimits {
  memory_mb?: number | null;
  timeout_ms?: number | null;
  fuel?: number | null;
  max_model_calls?: number | null;
  max_generated_tokens?: number | null;
}

export interface FunctionGrants {
  network?: string[];
  env?: Record<string, string>;
  storage?: boolean;
  models?: string[];
  knowledge_bases?: string[];
  kv?: boolean;
  files?: boolean;
}

export interface FunctionDeployParams {
  name: string;
  kind?: FunctionKind;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  limits?: FunctionLimits;
  grants?: FunctionGrants;
  replaces?: 'rag' | null;
}

/** A deployed function (the version that serves). */
export interface TensorasFunction {
  id: string;
  object: 'function';
  name: string;
  version: number;
  kind: FunctionKind;
  description: string;
  limits: FunctionLimits;
  grants: FunctionGrants;
  sha256: string;
  size_bytes: number;
  created_at: number;
  parameters?: Record<string, unknown> | null;
  /** HTTP functions: where to send requests. */
  url?: string;
  /** Chat functions: the model name to use it by, `fn:NAME`. */
  model?: string;
  replaces?: string;
}

export interface FunctionVersion extends Omit<TensorasFunction, 'object'> {
  object: 'function.version';
  /** Whether this version serves. */
  active: boolean;
}

export interface ToolResult {
  object: 'function.result';
  name: string;
  output: string;
  duration_ms: number;
}

export interface FunctionInvocation {
  id: number;
  object: 'function.invocation';
  started_at_ms: number;
  duration_ms: number;
  status: 'ok' | 'error';
  error?: string | null;
  /** What it wrote to stdout and stderr. */
  output: string;
}

/** A function's recent invocations, oldest first. */
export interface FunctionLogs {
  object: 'list';
  data: FunctionInvocation[];
  stats: { invocations: number; errors: number; mean_duration_ms: number };
}

export interface FunctionInvokeOptions {
  /** The path the function sees (`/` by default). */
  path?: string;
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  body?: string | Uint8Array | Blob | null;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean>;
}

// --- Usage, keys, tenants, models -------------------------------------------------------

export interface UsageCounts {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost_usd: number;
}

export interface UsageBucket extends UsageCounts {
  object: 'usage.bucket';
  day?: string;
  tenant?: string;
  key_id?: string;
  model?: string;
}

export interface UsageReport {
  object: 'list';
  start: string;
  end: string;
  group_by: string[];
  data: UsageBucket[];
  total: UsageCounts;
}

export interface UsageParams {
  /** `YYYY-MM-DD` or a `Date` (UTC). */
  start?: string | Date;
  end?: string | Date;
  model?: string;
  key?: string;
  tenant?: string;
  group_by?: Array<'day' | 'model' | 'key' | 'tenant'>;
}

export type Role = 'member' | 'admin' | 'operator';

export interface APIKey {
  id: string;
  object: 'api_key';
  name: string;
  tenant: string;
  role: Role;
  scopes: string[];
  plan?: string | null;
  created_at: number;
  /** The secret, `tns_...`: in the answer to `keys.create` only. */
  key?: string;
}

export interface KeyCreateParams {
  name: string;
  tenant?: string;
  role?: Role;
  scopes?: string[];
  plan?: string;
}

export interface Tenant {
  object: 'tenant';
  name: string;
  plan?: string | null;
  effective_plan: string;
  monthly_budget_usd?: number | null;
  spent_this_month_usd: number;
}

export interface TenantUpdateParams {
  plan?: string | null;
  monthly_budget_usd?: number | null;
}

/** OpenAI's model object with what Tensoras adds. */
export interface Model extends OpenAI.Models.Model {
  kind: 'chat' | 'embedding' | 'function';
  context_length?: number;
  aliases?: string[];
  pricing?: { input_per_million: number; output_per_million: number };
  description?: string;
}
