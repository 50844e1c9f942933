// A real OpenID Connect provider (panva/oidc-provider from the npm registry) for eodispatch's
// login tests. Everything OAuth is the library's own code: discovery, device flow, PKCE,
// authorization code, refresh-token rotation, client credentials, introspection, userinfo.
// What this file adds is test plumbing only:
//   - the user "signs in" without typing: the interaction pages log the test user in and grant
//     consent, so an HTTP client that follows redirects (and posts the device confirmation form)
//     plays the browser;
//   - an in-memory storage adapter the tests can empty (POST /_test/revoke: every grant, access
//     and refresh token is forgotten, as when an administrator revokes a session;
//     `?what=access` forgets access tokens only, as when they expire early);
//   - GET /_test/issued: every token value issued so far;
//   - GET /_test/stats: how many token requests of each grant type the provider answered and
//     which scopes were asked for.
//
//   - POST /_test/slow_down?n=N: the next N pending device polls answer `slow_down`.
//
// Usage: node server.mjs [--port 0] [--access-ttl 3600] [--device-ttl 600] [--user alice]
// Prints one line `READY <issuer>` once it listens on 127.0.0.1.
import http from 'node:http';
import Provider from 'oidc-provider';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const port = Number(args.port ?? 0);
const accessTtl = Number(args['access-ttl'] ?? 3600);
const deviceTtl = Number(args['device-ttl'] ?? 600);
const user = args.user ?? 'alice';

// ---- storage the tests can empty -------------------------------------------------------
const store = new Map();
// Every token value issued (opaque tokens are stored under their value), so that tests can
// look for them where they must never be.
const issued = new Set();
class TestAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    if (['AccessToken', 'RefreshToken', 'ClientCredentials', 'DeviceCode', 'AuthorizationCode'].includes(this.model)) {
      issued.add(id);
    }
    store.set(this.key(id), { payload, expires: expiresIn ? Date.now() + expiresIn * 1000 : null });
    if (payload.grantId) store.set(`grant:${payload.grantId}:${this.key(id)}`, { payload: id });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id });
    if (payload.uid) store.set(`uid:${payload.uid}`, { payload: id });
  }
  async find(id) {
    const e = store.get(this.key(id));
    if (!e) return undefined;
    if (e.expires && e.expires < Date.now()) { store.delete(this.key(id)); return undefined; }
    return e.payload;
  }
  async findByUserCode(code) {
    const id = store.get(`userCode:${code}`)?.payload;
    return id ? this.find(id) : undefined;
  }
  async findByUid(uid) {
    const id = store.get(`uid:${uid}`)?.payload;
    return id ? this.find(id) : undefined;
  }
  async consume(id) {
    const e = store.get(this.key(id));
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const k of [...store.keys()]) {
      if (k.startsWith(`grant:${grantId}:`)) {
        store.delete(k.slice(`grant:${grantId}:`.length));
        store.delete(k);
      }
    }
  }
}
function revokeEverything(accessOnly) {
  let n = 0;
  const what = accessOnly
    ? /^(AccessToken|ClientCredentials):/
    : /^(Grant|AccessToken|RefreshToken|ClientCredentials|DeviceCode|AuthorizationCode):/;
  for (const k of [...store.keys()]) {
    if (what.test(k)) {
      store.delete(k);
      n += 1;
    }
  }
  return n;
}

// ---- statistics -------------------------------------------------------------------------
const stats = {
  token: {}, device_authorization: 0, authorization: 0, scopes_requested: [],
  device_polls: [], // milliseconds since the epoch of each device_code token request
};
// POST /_test/slow_down?n=N: the next N pending device polls answer `slow_down` (the library
// itself never sends it; RFC 8628 lets a provider do so).
let slowDowns = 0;

// ---- the provider ------------------------------------------------------------------------
const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  clients: [
    {
      // Public client for people: device code (+PKCE), authorization code + PKCE with a
      // loopback redirect (any port, RFC 8252 §7.3), refresh tokens.
      client_id: 'eodispatch-public',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/auth/callback', 'http://localhost/auth/callback'],
    },
    {
      // A service account.
      client_id: 'ci-robot',
      client_secret: 'ci-robot-secret-0123456789abcdef',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      // The fake openEO backend checks bearer tokens by introspection as this client.
      client_id: 'fake-openeo',
      client_secret: 'fake-openeo-introspection-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'] },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() { return { sub, name: `Test user ${sub}`, preferred_username: sub, email: `${sub}@example.test` }; },
    };
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  pkce: { required: () => true },
  // Every public-client refresh rotates the refresh token (the library's default for
  // clients without authentication); refresh tokens are issued when offline_access is granted.
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    AuthorizationCode: 60,
    DeviceCode: deviceTtl,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 14 * 24 * 3600,
    Session: 24 * 3600,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['eodispatch-test-cookie-key'] },
  loadExistingGrants: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session?.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  // Test plumbing.
  if (ctx.path === '/_test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/_test/slow_down' && ctx.method === 'POST') {
    slowDowns = Number(ctx.query.n ?? 1);
    ctx.body = { slow_down: slowDowns };
    return;
  }
  if (ctx.path === '/_test/issued') {
    ctx.body = [...issued];
    return;
  }
  if (ctx.path === '/_test/revoke' && ctx.method === 'POST') {
    ctx.body = { revoked: revokeEverything(ctx.query.what === 'access') };
    return;
  }
  // The user signs in and consents without typing.
  const m = ctx.path.match(/^\/interaction\/([\w-]+)$/);
  if (m) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: user } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      result = { consent: { grantId: await grant.save() } };
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  // Statistics of what clients ask for.
  if (ctx.path === '/token' && ctx.method === 'POST') {
    await next();
    const grant = ctx.oidc?.params?.grant_type ?? 'unknown';
    if (grant === 'urn:ietf:params:oauth:grant-type:device_code') {
      stats.device_polls.push(Date.now());
      if (slowDowns > 0 && ctx.status === 400 && ctx.body?.error === 'authorization_pending') {
        slowDowns -= 1;
        ctx.body = { error: 'slow_down', error_description: 'you are polling too quickly' };
      }
    }
    const key = ctx.status === 200 ? grant : `${grant}:${ctx.body?.error ?? ctx.status}`;
    stats.token[key] = (stats.token[key] ?? 0) + 1;
    return;
  }
  if (ctx.path === '/device/auth' || ctx.path === '/auth') {
    await next();
    const scope = ctx.oidc?.params?.scope;
    if (scope) stats.scopes_requested.push(scope);
    if (ctx.path === '/auth') stats.authorization += 1; else stats.device_authorization += 1;
    return;
  }
  await next();
});

server.on('request', provider.callback());
process.stdout.write(`READY ${issuer}\n`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
