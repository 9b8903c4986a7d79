import { useState } from 'preact/hooks';

export function SignIn({ onSignIn }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSignIn(key.trim());
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <div class="signin">
      <form class="card" onSubmit={submit}>
        <h1>Tensoras console</h1>
        <label>
          API key
          <input
            type="password"
            data-testid="api-key"
            autocomplete="off"
            placeholder="tns_..."
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            required
          />
        </label>
        <button type="submit" data-testid="sign-in" disabled={busy || !key.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error && (
          <div class="banner error" data-testid="sign-in-error" role="alert">
            {error.message}
          </div>
        )}
        <p class="muted">The key stays in this tab's session storage and is sent only to this server.</p>
      </form>
    </div>
  );
}
