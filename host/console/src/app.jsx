import { useState, useEffect } from 'preact/hooks';
import { getKey, setKey, get } from './api.js';
import { Playground } from './pages/playground.jsx';
import { Usage } from './pages/usage.jsx';
import { Keys } from './pages/keys.jsx';
import { Functions } from './pages/functions.jsx';
import { KnowledgeBases } from './pages/knowledge-bases.jsx';
import { Files } from './pages/files.jsx';
import { SignIn } from './pages/sign-in.jsx';

const PAGES = [
  { id: 'playground', title: 'Playground', component: Playground },
  { id: 'usage', title: 'Usage', component: Usage },
  { id: 'keys', title: 'API keys', component: Keys },
  { id: 'functions', title: 'Functions', component: Functions },
  { id: 'knowledge-bases', title: 'Knowledge bases', component: KnowledgeBases },
  { id: 'files', title: 'Files', component: Files },
];

function currentRoute() {
  const id = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return PAGES.some((p) => p.id === id) ? id : 'playground';
}

export function App() {
  const [key, setKeyState] = useState(getKey());
  const [route, setRoute] = useState(currentRoute());

  useEffect(() => {
    const onHash = () => setRoute(currentRoute());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  const signIn = async (candidate) => {
    // GET /v1/models is the cheapest call every valid key may make.
    await get('/v1/models', { key: candidate });
    setKey(candidate);
    setKeyState(candidate);
    if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/playground';
  };

  const signOut = () => {
    setKey('');
    setKeyState('');
  };

  if (!key) return <SignIn onSignIn={signIn} />;

  const page = PAGES.find((p) => p.id === route);
  const Page = page.component;
  return (
    <div class="layout">
      <nav class="sidebar">
        <div class="brand">Tensoras</div>
        {PAGES.map((p) => (
          <a
            key={p.id}
            href={`#/${p.id}`}
            data-testid={`nav-${p.id}`}
            class={p.id === route ? 'active' : ''}
            aria-current={p.id === route ? 'page' : undefined}
          >
            {p.title}
          </a>
        ))}
        <div class="grow" />
        <button type="button" class="secondary" data-testid="sign-out" onClick={signOut}>
          Sign out
        </button>
      </nav>
      <main class="content">
        <h1>{page.title}</h1>
        {/* Keyed by route so leaving a page unmounts it and stops its polling. */}
        <Page key={route} />
      </main>
    </div>
  );
}
