-- Node identity (built-in CA): join tokens stored by hash only, the certificates the CA issued, and
-- revocations by serial or by SPIFFE ID.
CREATE TABLE IF NOT EXISTS join_tokens (
  id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  namespace TEXT NOT NULL,
  node_type TEXT NOT NULL,
  uses_remaining INTEGER NOT NULL CHECK (uses_remaining >= 0),
  max_uses INTEGER NOT NULL CHECK (max_uses >= 1),
  expires_at TIMESTAMPTZ NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_used_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS issued_certificates (
  serial TEXT PRIMARY KEY,
  spiffe_id TEXT NOT NULL,
  namespace TEXT NOT NULL,
  node_type TEXT NOT NULL,
  node_id TEXT NOT NULL,
  not_before TIMESTAMPTZ NOT NULL,
  not_after TIMESTAMPTZ NOT NULL,
  -- 'join_token:<token id>' or 'renewal:<previous serial>'.
  issued_via TEXT NOT NULL,
  issued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS issued_certificates_spiffe_id ON issued_certificates (spiffe_id);
CREATE INDEX IF NOT EXISTS issued_certificates_not_after ON issued_certificates (not_after);

-- A revocation names a serial or a SPIFFE ID; a SPIFFE ID revocation covers the certificates of that
-- ID issued up to revoked_at (the node may enrol again with a new join token).
CREATE TABLE IF NOT EXISTS certificate_revocations (
  id BIGSERIAL PRIMARY KEY,
  serial TEXT,
  spiffe_id TEXT,
  reason TEXT NOT NULL,
  revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK (serial IS NOT NULL OR spiffe_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS certificate_revocations_serial ON certificate_revocations (serial);
CREATE INDEX IF NOT EXISTS certificate_revocations_spiffe_id ON certificate_revocations (spiffe_id);
