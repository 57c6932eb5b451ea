// The application shell: checks the session (/v1/me), shows the sign-in page or the console
// (header with user, role, live indicator and logout; left navigation; the routed page), and
// returns to sign-in whenever a call answers 401.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, api, can, setCsrfToken, setUnauthorizedHandler, type Me } from './api';
import { ErrorBanner } from './components/ErrorBanner';
import { startLive, stopLive, useLiveMode } from './live';
import { navigate, useRoute, type Route } from './router';
import { SessionContext } from './session';
import { AuditPage } from './pages/Audit';
import { BackupsPage } from './pages/Backups';
import { DashboardPage } from './pages/Dashboard';
import { LoginPage } from './pages/Login';
import { NodesPage } from './pages/Nodes';
import { OrphansPage } from './pages/Orphans';
import { RecurringJobsPage } from './pages/RecurringJobs';
import { SecretsPage } from './pages/Secrets';
import { SettingsPage } from './pages/Settings';
import { TokensPage } from './pages/Tokens';
import { UsersPage } from './pages/Users';
import { VolumePage } from './pages/Volume';
import { VolumesPage } from './pages/Volumes';

interface NavItem {
  path: string;
  label: string;
  admin?: boolean;
}

const NAV: NavItem[] = [
  { path: '/', label: 'Dashboard' },
  { path: '/volumes', label: 'Volumes' },
  { path: '/nodes', label: 'Nodes' },
  { path: '/recurringjobs', label: 'Recurring jobs' },
  { path: '/backups', label: 'Backups' },
  { path: '/orphans', label: 'Orphans' },
  { path: '/settings', label: 'Settings' },
  { path: '/users', label: 'Users', admin: true },
  { path: '/tokens', label: 'API tokens', admin: true },
  { path: '/secrets', label: 'Secrets', admin: true },
  { path: '/audit', label: 'Audit log', admin: true },
];

export function App() {
  // undefined: still asking /v1/me; null: signed out.
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [startError, setStartError] = useState<unknown>(null);

  const signedOut = useCallback(() => {
    stopLive();
    setCsrfToken('');
    setMe(null);
  }, []);

  const signedIn = useCallback((who: Me) => {
    setCsrfToken(who.csrfToken);
    setStartError(null);
    setMe(who);
    startLive();
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(signedOut);
    api.me().then(signedIn, (e: unknown) => {
      if (!(e instanceof ApiError && e.status === 401)) setStartError(e);
      setMe(null);
    });
    return () => setUnauthorizedHandler(null);
  }, [signedIn, signedOut]);

  if (me === undefined) {
    return <div class="boot">Loading…</div>;
  }
  if (me === null) {
    return (
      <LoginPage
        notice={startError}
        onSignedIn={(who) => {
          signedIn(who);
          navigate('#/');
        }}
      />
    );
  }
  return (
    <SessionContext.Provider value={me}>
      <Shell
        me={me}
        onLogout={() => {
          api
            .logout()
            .catch(() => undefined)
            .finally(() => {
              signedOut();
              navigate('#/');
            });
        }}
      />
    </SessionContext.Provider>
  );
}

function LiveIndicator() {
  const mode = useLiveMode();
  const text = mode === 'live' ? 'live' : mode === 'polling' ? 'polling' : mode === 'connecting' ? 'connecting' : 'off';
  const title =
    mode === 'live'
      ? 'Updates arrive as the server changes'
      : mode === 'polling'
        ? 'The event stream is unavailable: refreshing every 5 s while reconnecting'
        : 'Connecting to the event stream';
  return (
    <span class={`live live-${mode}`} title={title} data-testid="live-indicator" data-mode={mode}>
      <span class="live-dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function Shell(props: { me: Me; onLogout: () => void }) {
  const route = useRoute();
  const isAdmin = can(props.me.role, 'admin');
  const active = route.segments[0] ?? '';

  return (
    <div class="shell">
      <header class="header">
        <a class="brand" href="#/">
          <span class="brand-mark" aria-hidden="true">
            ih
          </span>
          Ironhorn
        </a>
        <div class="header-right">
          <LiveIndicator />
          <span class="who" data-testid="user">
            {props.me.user}
          </span>
          <span class={`role role-${props.me.role}`} data-testid="role">
            {props.me.role}
          </span>
          <button type="button" class="button button-small" data-testid="logout" onClick={props.onLogout}>
            Sign out
          </button>
        </div>
      </header>
      <nav class="nav" aria-label="Main">
        <ul>
          {NAV.filter((n) => !n.admin || isAdmin).map((n) => {
            const seg = n.path.slice(1);
            const current = seg === active;
            return (
              <li>
                <a
                  href={'#' + n.path}
                  class={current ? 'nav-active' : undefined}
                  aria-current={current ? 'page' : undefined}
                  data-nav={seg || 'dashboard'}
                >
                  {n.label}
                </a>
              </li>
            );
          })}
        </ul>
      </nav>
      <main class="main">
        <Page route={route} isAdmin={isAdmin} />
      </main>
    </div>
  );
}

function AdminOnly(props: { isAdmin: boolean; children: ComponentChildren }) {
  if (props.isAdmin) return <>{props.children}</>;
  return (
    <section class="page">
      <ErrorBanner error="You are not allowed to see this page: it needs the admin role." />
    </section>
  );
}

function Page({ route, isAdmin }: { route: Route; isAdmin: boolean }) {
  const [first, second] = route.segments;
  switch (first) {
    case undefined:
      return <DashboardPage />;
    case 'volumes':
      return second ? <VolumePage key={second} name={second} /> : <VolumesPage query={route.query} />;
    case 'nodes':
      return <NodesPage />;
    case 'recurringjobs':
      return <RecurringJobsPage />;
    case 'backups':
      return <BackupsPage query={route.query} />;
    case 'orphans':
      return <OrphansPage />;
    case 'settings':
      return <SettingsPage />;
    case 'users':
      return (
        <AdminOnly isAdmin={isAdmin}>
          <UsersPage />
        </AdminOnly>
      );
    case 'tokens':
      return (
        <AdminOnly isAdmin={isAdmin}>
          <TokensPage />
        </AdminOnly>
      );
    case 'secrets':
      return (
        <AdminOnly isAdmin={isAdmin}>
          <SecretsPage />
        </AdminOnly>
      );
    case 'audit':
      return (
        <AdminOnly isAdmin={isAdmin}>
          <AuditPage query={route.query} />
        </AdminOnly>
      );
    default:
      return (
        <section class="page">
          <h1>Not found</h1>
          <p>
            There is no page at <code>{route.path}</code>. <a href="#/">Go to the dashboard</a>.
          </p>
        </section>
      );
  }
}
