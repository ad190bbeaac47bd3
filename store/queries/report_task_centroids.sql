-- The report: per stored task, the mean train-split embedding under one encoder configuration (per task the
-- largest cache entry, the whole split rather than a method's sample, newest among equals), one row per dimension.
WITH keys AS (
    SELECT arg_max(e.cache_key, (e.n, e.created_at)) AS cache_key, e.task
    FROM embeddings e SEMI JOIN tasks t ON e.task = t.name
    WHERE e.split = 'train' AND e.model = $model AND e.pooling = $pooling AND e.max_length = $max_length
      AND e.normalize = $normalize AND e.precision = $precision
    GROUP BY e.task
), items AS (
    SELECT k.task, unnest(v.embedding) AS x, generate_subscripts(v.embedding, 1) AS i
    FROM embedding_vectors v JOIN keys k USING (cache_key)
)
SELECT task, i, avg(x) AS x FROM items GROUP BY task, i ORDER BY task, i;
