// A real OpenID Connect provider for the tests: npm `oidc-provider` (9.x, pinned in .ci/tools.sh) on Node 22.
//
// Started by tests/support/oidc.py with one JSON document on stdin (its secrets stay out of the process list):
//   {"port", "module" (the oidc-provider entry file), "users": {name: password}, "groups": {name: [group]},
//    "clients": [{client_id, client_secret, redirect_uris}], "resource" (the MCP server's URL: JWT access tokens
//    are for it, unless the token request names another of "resources": each replica's own URL), "scopes"}
// Each user's groups are a `groups` claim in their ID tokens and access tokens.
// Users sign in at a login form of our own (a real password check), then every asked scope is granted.
// PKCE (S256) is required of every client; ID tokens and access tokens are RS256; access tokens are JWTs
// whose audience is the resource. It prints "ready <issuer>" when it listens.
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(0, 'utf8'));
const { default: Provider, errors } = await import(pathToFileURL(config.module).href);
const issuer = `http://127.0.0.1:${config.port}`;
const resources = config.resources || [config.resource];
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    ...c,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  })),
  jwks: { keys: [key] },
  cookies: { keys: ['test-cookie-key-not-a-secret-0123456789'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub', 'groups'], profile: ['name'] },
  scopes: ['openid', 'profile', ...config.scopes],
  findAccount: (ctx, id) =>
    id in config.users
      ? {
          accountId: id,
          claims: () => ({ sub: id, name: id[0].toUpperCase() + id.slice(1), groups: config.groups[id] || [] }),
        }
      : undefined,
  extraTokenClaims: (ctx, token) =>
    token.kind === 'AccessToken' ? { groups: config.groups[token.accountId] || [] } : undefined,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (!resources.includes(resource)) throw new errors.InvalidTarget();
        return {
          scope: config.scopes.join(' '),
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginForm(uid, error) {
  return `<!doctype html><html><head><title>Sign in</title></head><body>
<h1>Sign in to the test identity provider</h1>${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>User <input id="username" name="username" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="submit" type="submit">Sign in</button></form></body></html>`;
}

async function formOf(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function grantAll(req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const isLogin = req.method === 'POST' && req.url.endsWith('/login');
  if (isLogin) {
    const form = await formOf(req);
    const user = form.get('username') || '';
    if (!(user in config.users) || config.users[user] !== form.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginForm(details.uid, 'Wrong user or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(details.uid));
    return;
  }
  await grantAll(req, res, details); // consent: every asked scope, the user signed in already
}

const handle = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${err.message}`);
    });
    return;
  }
  handle(req, res);
});
server.listen(config.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
