-- 0003_backend_logins: which backend is logged in with which OIDC provider and client, so
-- that a restarted daemon knows where to find the refresh token (or client secret) in the
-- OS keyring. Nothing secret is stored here: the secrets live in the keyring only, keyed
-- by issuer and client id.

CREATE TABLE backend_logins (
    endpoint       TEXT PRIMARY KEY NOT NULL,  -- normalised backend URL
    provider_id    TEXT NOT NULL,
    provider_title TEXT,
    issuer         TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    method         TEXT NOT NULL CHECK (method IN ('device', 'browser', 'client_credentials')),
    created        TEXT NOT NULL
) WITHOUT ROWID;
