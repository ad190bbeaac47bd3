SELECT task, split, model, pooling, max_length, normalize, precision, n, dim, seconds, path, created_at
FROM embeddings
ORDER BY task, split, model, precision;
