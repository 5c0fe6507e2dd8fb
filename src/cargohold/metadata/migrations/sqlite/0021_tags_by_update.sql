-- The web UI's tag list sorted by push time, a page at a time.
CREATE INDEX tags_by_update ON tags (repository_id, updated_at, name);
