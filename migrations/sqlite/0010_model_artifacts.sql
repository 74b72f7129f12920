-- Model artifacts kept in the ML store, so that workers on any node load
-- them without a shared volume. Addressed by their SHA-256, which the
-- models table records; a worker caches them on its local disk.
CREATE TABLE model_artifacts (
    sha256      TEXT PRIMARY KEY,
    content     BLOB NOT NULL,
    size_bytes  INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
