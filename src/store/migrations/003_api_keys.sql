-- API keys: only the SHA-256 of each secret is kept; the key itself is shown once, at creation.
-- Revoked keys stay (revoked_at set) so that lists and audits can still name them.
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT,
  namespace TEXT NOT NULL,
  scope TEXT NOT NULL CHECK (scope IN ('nodes:read', 'nodes:write', 'admin')),
  secret_hash TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  revoked_at TIMESTAMPTZ
);
