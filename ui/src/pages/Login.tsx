// The sign-in page: user and password to POST /v1/login; the API's message (wrong password,
// too many attempts and how long to wait) shown as it says it.
import { useState } from 'preact/hooks';
import { api, describeError, type Me } from '../api';
import { ErrorBanner } from '../components/ErrorBanner';

export function LoginPage(props: { onSignedIn: (me: Me) => void; notice?: unknown }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const me = await api.login({ user: user.trim(), password });
      props.onSignedIn(me);
    } catch (err) {
      setError(describeError(err, 'sign in'));
      setBusy(false);
    }
  };

  return (
    <div class="login">
      <form class="login-card" onSubmit={submit} data-testid="login-form">
        <div class="login-brand">
          <span class="brand-mark" aria-hidden="true">
            ih
          </span>
          <div>
            <h1>Ironhorn</h1>
            <p class="muted">Distributed block storage</p>
          </div>
        </div>
        {props.notice && !error ? <ErrorBanner error={props.notice} /> : null}
        <label class="field">
          <span>User</span>
          <input
            id="login-user"
            name="user"
            autoComplete="username"
            autoFocus
            required
            value={user}
            onInput={(e) => setUser((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field">
          <span>Password</span>
          <input
            id="login-password"
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </label>
        <ErrorBanner error={error} />
        <button
          id="login-submit"
          type="submit"
          class="button button-primary button-block"
          disabled={busy}
          aria-busy={busy ? 'true' : undefined}
        >
          {busy ? <span class="spinner" aria-hidden="true" /> : null}
          Sign in
        </button>
      </form>
    </div>
  );
}
