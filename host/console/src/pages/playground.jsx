import { useState, useEffect, useRef } from 'preact/hooks';
import { get, post, streamChat } from '../api.js';
import { ErrorBanner, useAction } from '../ui.jsx';

function Citations({ citations }) {
  if (!citations || !citations.length) return null;
  return (
    <div class="extras">
      <div class="muted">Citations</div>
      {citations.map((c) => (
        <details class="citation" data-testid="pg-citation" key={`${c.knowledge_base_id}/${c.file_id}/${c.chunk_index}/${c.index}`}>
          <summary>
            [{c.index}] {c.source} <span class="muted">score {Number(c.score).toFixed(4)}</span>
          </summary>
          <pre>{c.text}</pre>
        </details>
      ))}
    </div>
  );
}

function ToolCalls({ calls }) {
  if (!calls || !calls.length) return null;
  return (
    <div class="extras">
      <div class="muted">Server tool calls</div>
      {calls.map((t) => (
        <div class={`toolcall ${t.is_error ? 'is-error' : ''}`} data-testid="pg-server-tool-call" data-error={String(!!t.is_error)} key={t.id}>
          <div>
            <b>{t.name}</b> {t.is_error && <span class="badge error">error</span>}
          </div>
          <div>
            <span class="muted">arguments</span> <code>{t.arguments}</code>
          </div>
          <div>
            <span class="muted">output</span> <code>{t.output}</code>
          </div>
        </div>
      ))}
    </div>
  );
}

function Message({ m }) {
  return (
    <div
      class={`message ${m.role}`}
      data-testid="pg-message"
      data-role={m.role}
      {...(m.role === 'assistant' ? { 'data-streaming': String(!!m.streaming), 'data-chunks': String(m.chunks || 0) } : {})}
    >
      {/* The role label and the streaming cursor come from CSS, so the text is only the content. */}
      <div class="text">{m.content}</div>
      <ToolCalls calls={m.toolCalls} />
      <Citations citations={m.citations} />
      {m.usage && (
        <div class="muted small" data-testid="pg-usage">
          {m.usage.prompt_tokens} prompt + {m.usage.completion_tokens} completion = {m.usage.total_tokens} tokens
          {m.finish ? ` · finish: ${m.finish}` : ''}
        </div>
      )}
    </div>
  );
}

export function Playground() {
  const { error, setError, running, run } = useAction();
  const [models, setModels] = useState([]);
  const [kbs, setKbs] = useState([]);
  const [tools, setTools] = useState([]);
  const [settings, setSettings] = useState({
    model: '',
    system: '',
    temperature: 0.7,
    maxTokens: 256,
    // Empty: each answer samples afresh; a number makes a sampled answer repeatable.
    seed: NaN,
    stream: true,
    kbs: [],
    tools: [],
    toolChoice: 'auto',
  });
  const [input, setInput] = useState('');
  const [messages, setMessages] = useState([]);
  const abort = useRef(null);

  useEffect(() => {
    run('init', async () => {
      const list = await get('/v1/models');
      const chat = list.data.filter((m) => !m.kind || m.kind === 'chat');
      // If the server marks none as chat, offer everything and let its error explain.
      const usable = chat.length ? chat : list.data;
      setModels(usable);
      setSettings((s) => ({ ...s, model: s.model || (usable[0] && usable[0].id) || '' }));
    });
    // Knowledge bases and functions are optional extras; a key that cannot list them
    // still chats, so their failures only show in the banner.
    get('/v1/knowledge-bases').then((l) => setKbs(l.data), (e) => setError(e));
    get('/v1/functions').then((l) => setTools(l.data.filter((f) => f.kind === 'tool')), (e) => setError(e));
    return () => abort.current && abort.current.abort();
  }, []);

  const set = (name) => (e) => {
    const t = e.currentTarget;
    const value = t.type === 'checkbox' ? t.checked : t.type === 'number' ? t.valueAsNumber : t.value;
    setSettings((s) => ({ ...s, [name]: value }));
  };
  const toggle = (name, value) => (e) => {
    const on = e.currentTarget.checked;
    setSettings((s) => ({ ...s, [name]: on ? [...s[name], value] : s[name].filter((v) => v !== value) }));
  };

  // Changes the last (assistant) message in place as the answer arrives.
  const updateLast = (fn) =>
    setMessages((ms) => {
      const copy = ms.slice();
      copy[copy.length - 1] = fn(copy[copy.length - 1]);
      return copy;
    });

  const send = () => {
    const text = input.trim();
    if (!text || running.send) return;
    const history = [...messages, { role: 'user', content: text }];
    const body = {
      model: settings.model,
      messages: [
        ...(settings.system.trim() ? [{ role: 'system', content: settings.system }] : []),
        // Earlier answers that failed before saying anything are not part of the conversation.
        ...history.filter((m) => m.role === 'user' || m.content).map((m) => ({ role: m.role, content: m.content })),
      ],
    };
    if (Number.isFinite(settings.temperature)) body.temperature = settings.temperature;
    if (Number.isFinite(settings.maxTokens)) body.max_tokens = settings.maxTokens;
    if (Number.isFinite(settings.seed)) body.seed = settings.seed;
    if (settings.kbs.length) body.knowledge_bases = settings.kbs;
    if (settings.tools.length) {
      body.tools = settings.tools.map((name) => ({ type: 'tensoras_function', tensoras_function: { name } }));
      body.tool_choice = settings.toolChoice;
    }
    setInput('');
    setMessages([...history, { role: 'assistant', content: '', streaming: settings.stream, chunks: 0 }]);

    run('send', async () => {
      const controller = new AbortController();
      abort.current = controller;
      try {
        if (settings.stream) {
          body.stream_options = { include_usage: true };
          await streamChat(body, {
            signal: controller.signal,
            onChunk: (chunk) =>
              updateLast((m) => {
                const next = { ...m };
                if (chunk.citations) next.citations = chunk.citations;
                if (chunk.usage) next.usage = chunk.usage;
                const choice = chunk.choices && chunk.choices[0];
                if (choice) {
                  const d = choice.delta || {};
                  if (typeof d.content === 'string' && d.content !== '') {
                    next.content = m.content + d.content;
                    next.chunks = (m.chunks || 0) + 1;
                  }
                  if (d.server_tool_calls) next.toolCalls = [...(m.toolCalls || []), ...d.server_tool_calls];
                  if (choice.finish_reason) next.finish = choice.finish_reason;
                }
                return next;
              }),
          });
        } else {
          const answer = await post('/v1/chat/completions', body, { signal: controller.signal });
          const choice = answer.choices[0] || {};
          const msg = choice.message || {};
          updateLast((m) => ({
            ...m,
            content: msg.content || '',
            citations: answer.citations,
            toolCalls: msg.server_tool_calls,
            usage: answer.usage,
            finish: choice.finish_reason,
          }));
        }
      } finally {
        abort.current = null;
        updateLast((m) => ({ ...m, streaming: false }));
      }
    });
  };

  const stop = () => abort.current && abort.current.abort();
  const clear = () => {
    stop();
    setMessages([]);
    setError(null);
  };

  return (
    <div class="playground">
      <aside class="card settings">
        <label>
          Model
          <select data-testid="pg-model" value={settings.model} onChange={set('model')}>
            {models.map((m) => (
              <option value={m.id}>{m.id}</option>
            ))}
          </select>
        </label>
        <label>
          System prompt
          <textarea data-testid="pg-system" rows={3} value={settings.system} onInput={set('system')} />
        </label>
        <div class="form-row">
          <label>
            Temperature
            <input type="number" data-testid="pg-temperature" min="0" max="2" step="0.1" value={settings.temperature} onInput={set('temperature')} />
          </label>
          <label>
            Max tokens
            <input type="number" data-testid="pg-max-tokens" min="1" step="1" value={settings.maxTokens} onInput={set('maxTokens')} />
          </label>
          <label>
            Seed
            <input type="number" data-testid="pg-seed" step="1" placeholder="random" value={Number.isFinite(settings.seed) ? settings.seed : ''} onInput={set('seed')} />
          </label>
        </div>
        <label class="check">
          <input type="checkbox" data-testid="pg-stream" checked={settings.stream} onChange={set('stream')} /> Stream
        </label>
        <fieldset>
          <legend>Knowledge bases</legend>
          {kbs.length === 0 && <div class="muted small">None.</div>}
          {kbs.map((kb) => (
            <label class="check" key={kb.id}>
              <input type="checkbox" data-testid="pg-kb-option" value={kb.id} checked={settings.kbs.includes(kb.id)} onChange={toggle('kbs', kb.id)} />{' '}
              {kb.name} <span class="muted small">{kb.id}</span>
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Tools</legend>
          {tools.length === 0 && <div class="muted small">No tool functions deployed.</div>}
          {tools.map((f) => (
            <label class="check" key={f.name}>
              <input type="checkbox" data-testid="pg-tool-option" value={f.name} checked={settings.tools.includes(f.name)} onChange={toggle('tools', f.name)} />{' '}
              {f.name}
            </label>
          ))}
          <label>
            Tool choice
            <select data-testid="pg-tool-choice" value={settings.toolChoice} onChange={set('toolChoice')}>
              <option value="auto">auto</option>
              <option value="required">required</option>
              <option value="none">none</option>
            </select>
          </label>
        </fieldset>
      </aside>

      <section class="chat">
        <ErrorBanner error={error} onDismiss={() => setError(null)} />
        <div class="conversation">
          {messages.length === 0 && <div class="muted">Send a message to start a conversation.</div>}
          {messages.map((m, i) => (
            <Message m={m} key={i} />
          ))}
        </div>
        <form
          class="composer"
          onSubmit={(e) => {
            e.preventDefault();
            send();
          }}
        >
          <textarea
            data-testid="pg-input"
            rows={3}
            placeholder="Message (Ctrl+Enter to send)"
            value={input}
            onInput={(e) => setInput(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                send();
              }
            }}
          />
          <div class="buttons">
            <button type="submit" data-testid="pg-send" disabled={running.send || !input.trim() || !settings.model}>
              {running.send ? 'Sending…' : 'Send'}
            </button>
            <button type="button" class="secondary" data-testid="pg-stop" disabled={!running.send} onClick={stop}>
              Stop
            </button>
            <button type="button" class="secondary" data-testid="pg-clear" onClick={clear}>
              Clear
            </button>
          </div>
        </form>
      </section>
    </div>
  );
}
