-- Immutable tag rules (cargohold admin immutable, /admin/v1/immutable-tags): a tag whose repository and
-- name match a rule's globs (fnmatch, case-sensitive, "*" also matches "/") is never moved to another
-- digest nor deleted. Ids are never reused (AUTOINCREMENT): the audit log names rules by id.
CREATE TABLE immutable_tag_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repository  TEXT NOT NULL,
    tag         TEXT NOT NULL,
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    UNIQUE (repository, tag)
);
