-- Per-namespace admission policies (CEL, every save a new version), quotas, and the audit log.

CREATE TABLE IF NOT EXISTS namespace_policies (
    namespace   VARCHAR(63)  NOT NULL,
    version     INTEGER      NOT NULL,
    expression  TEXT         NOT NULL,
    created_by  VARCHAR(255) NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
);

CREATE TABLE IF NOT EXISTS namespace_quotas (
    namespace           VARCHAR(63)  PRIMARY KEY,
    max_nodes           INTEGER,
    max_nodes_per_type  JSONB        NOT NULL DEFAULT '{}',
    updated_by          VARCHAR(255) NOT NULL,
    updated_at          TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- Append-only: rows are inserted, and deleted only by the retention purge.
CREATE TABLE IF NOT EXISTS audit_log (
    id           BIGSERIAL    PRIMARY KEY,
    occurred_at  TIMESTAMPTZ  NOT NULL,
    actor        VARCHAR(255) NOT NULL,
    action       VARCHAR(64)  NOT NULL,
    namespace    VARCHAR(63),
    node_id      VARCHAR(255),
    decision     VARCHAR(8)   NOT NULL CHECK (decision IN ('allowed', 'denied')),
    reason       TEXT,
    details      JSONB        NOT NULL DEFAULT '{}'
);

-- An UPDATE is silently dropped: no path, in code or by hand, rewrites history.
CREATE OR REPLACE RULE audit_log_no_update AS ON UPDATE TO audit_log DO INSTEAD NOTHING;

CREATE INDEX IF NOT EXISTS audit_log_namespace_id ON audit_log (namespace, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_occurred_at ON audit_log (occurred_at);
