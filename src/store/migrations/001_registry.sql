-- The registry's tables: registrations, their narrow lease rows, the topology log, role profiles.

CREATE TABLE node_registrations (
    namespace       VARCHAR(63)  NOT NULL,
    node_id         VARCHAR(255) NOT NULL,
    node_name       VARCHAR(255),
    node_type       VARCHAR(100) NOT NULL,
    node_version    VARCHAR(50)  NOT NULL,
    hostname        VARCHAR(253),
    ip              VARCHAR(45),
    role            VARCHAR(100),
    labels          TEXT[]       NOT NULL DEFAULT '{}',
    capabilities    JSONB        NOT NULL DEFAULT '{}',
    endpoints       JSONB        NOT NULL DEFAULT '{}',
    configuration   JSONB        NOT NULL DEFAULT '{}',
    current_state   JSONB        NOT NULL DEFAULT '{}',
    metadata        JSONB        NOT NULL DEFAULT '{}',
    health_status   VARCHAR(50)  NOT NULL DEFAULT 'unknown',
    status          VARCHAR(16)  NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline', 'removed')),
    incarnation     BIGINT       NOT NULL DEFAULT 0,
    lease_ttl_ms    INTEGER      NOT NULL,
    content_hash    VARCHAR(64)  NOT NULL,
    registered_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    last_heartbeat  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    removed_at      TIMESTAMPTZ,
    removal_reason  VARCHAR(100),
    PRIMARY KEY (namespace, node_id)
);

-- Reads are served from each instance's in-memory view: the table carries only the indexes its
-- own statements use (purge by removed_at). Ad-hoc SQL by type or capability scans, which at
-- registry sizes is cheap, while every extra index (a GIN one above all) taxes every write.
CREATE INDEX idx_node_registrations_removed_at ON node_registrations (removed_at) WHERE removed_at IS NOT NULL;

-- Lease renewals rewrite only this narrow row; the free space left by the fillfactor keeps the
-- updates heap-only (HOT), so a heartbeat storm neither bloats the table nor touches an index.
CREATE TABLE node_leases (
    namespace       VARCHAR(63)  NOT NULL,
    node_id         VARCHAR(255) NOT NULL,
    incarnation     BIGINT       NOT NULL,
    ttl_ms          INTEGER      NOT NULL,
    online          BOOLEAN      NOT NULL,
    last_heartbeat  TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (namespace, node_id)
) WITH (fillfactor = 70);

-- The topology log: one row per change, written in the transaction of the change.
-- `version` is gap-free and commits in order (writers serialise on topology_state's row).
CREATE TABLE topology_changes (
    version         BIGINT       PRIMARY KEY,
    namespace       VARCHAR(63)  NOT NULL,
    node_id         VARCHAR(255) NOT NULL,
    change_type     VARCHAR(16)  NOT NULL CHECK (change_type IN ('added', 'updated', 'removed')),
    changed_fields  TEXT[]       NOT NULL DEFAULT '{}',
    reason          VARCHAR(100) NOT NULL,
    changed_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    node            JSONB        NOT NULL
);
CREATE INDEX idx_topology_changes_changed_at ON topology_changes (changed_at);

CREATE TABLE topology_state (
    id              SMALLINT     PRIMARY KEY CHECK (id = 1),
    version         BIGINT       NOT NULL,
    -- The newest version pruned from topology_changes: a reader behind it must resync.
    pruned_through  BIGINT       NOT NULL DEFAULT 0
);
INSERT INTO topology_state (id, version) VALUES (1, 0);

CREATE TABLE node_profiles (
    namespace       VARCHAR(63)  NOT NULL,
    role            VARCHAR(100) NOT NULL,
    config          JSONB        NOT NULL,
    created_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, role)
);

-- Optional heartbeat history (the DAGI heartbeat_log), kept for a retention period.
CREATE TABLE heartbeat_log (
    id              BIGSERIAL    PRIMARY KEY,
    namespace       VARCHAR(63)  NOT NULL,
    node_id         VARCHAR(255) NOT NULL,
    recorded_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    status          VARCHAR(50),
    metrics         JSONB        NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_heartbeat_log_node ON heartbeat_log (namespace, node_id, recorded_at DESC);
CREATE INDEX idx_heartbeat_log_recorded_at ON heartbeat_log (recorded_at);
