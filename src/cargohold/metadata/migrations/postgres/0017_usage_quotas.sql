-- Namespace quotas and usage figures.
--
-- A quota limits the bytes a namespace's manifests reference: each distinct blob a manifest in one of
-- its repositories references, once, and the manifests' own bytes. used_bytes is that figure, kept
-- exact by every manifest push and delete in the namespace, in their transaction (only namespaces
-- with a quota pay for it), and recomputed when the quota is set and by the usage refresh. A push's check
-- finds the manifests that reference a blob by manifest_references_by_target (migration 0016).
CREATE TABLE namespace_quotas (
    namespace    TEXT COLLATE "C" PRIMARY KEY,
    limit_bytes  BIGINT NOT NULL,
    used_bytes   BIGINT NOT NULL,
    created_by   TEXT,
    updated_at   BIGINT NOT NULL
);

-- Usage figures as of computed_at, rewritten whole by each refresh (a job, or on demand). Bytes count
-- each distinct blob the manifests reference, once, and the manifests' own bytes. Exclusive bytes are
-- referenced by no other repository (namespace), shared bytes by some other too. Blobs linked but
-- referenced by no manifest (a push in progress or failed) are only in unreferenced_bytes.
CREATE TABLE repository_usage (
    repository_id       BIGINT PRIMARY KEY,
    repository          TEXT COLLATE "C" NOT NULL,
    namespace           TEXT COLLATE "C",
    total_bytes         BIGINT NOT NULL,
    exclusive_bytes     BIGINT NOT NULL,
    shared_bytes        BIGINT NOT NULL,
    manifest_bytes      BIGINT NOT NULL,
    unreferenced_bytes  BIGINT NOT NULL,
    manifests           BIGINT NOT NULL,
    tags                BIGINT NOT NULL,
    last_push_at        BIGINT,
    last_pull_at        BIGINT,
    computed_at         BIGINT NOT NULL
);
CREATE INDEX repository_usage_by_namespace ON repository_usage (namespace);

CREATE TABLE namespace_usage (
    namespace           TEXT COLLATE "C" PRIMARY KEY,
    repositories        BIGINT NOT NULL,
    total_bytes         BIGINT NOT NULL,
    exclusive_bytes     BIGINT NOT NULL,
    shared_bytes        BIGINT NOT NULL,
    manifest_bytes      BIGINT NOT NULL,
    unreferenced_bytes  BIGINT NOT NULL,
    manifests           BIGINT NOT NULL,
    tags                BIGINT NOT NULL,
    last_push_at        BIGINT,
    last_pull_at        BIGINT,
    computed_at         BIGINT NOT NULL
);

-- When the figures above were computed (one row once a refresh ran, even over no repository).
CREATE TABLE usage_refreshes (
    computed_at  BIGINT NOT NULL
);
