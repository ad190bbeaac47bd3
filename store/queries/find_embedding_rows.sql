-- Every cached embedding (one row per task split and encoder configuration), oldest first.
SELECT cache_key, task, split, n, created_at FROM embeddings ORDER BY created_at;
