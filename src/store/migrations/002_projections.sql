-- Where each projection (topology-diff relay, later the Consul reconciler) has got to in the
-- topology log, so that the one instance running it resumes after a restart or a hand-over.
CREATE TABLE IF NOT EXISTS projection_positions (
  projection TEXT PRIMARY KEY,
  version BIGINT NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
