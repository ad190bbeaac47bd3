-- The report: encoder configurations of the stored tasks' train-split embeddings, the most common first.
SELECT e.model, e.pooling, e.max_length, e.normalize, e.precision, count(DISTINCT e.task) AS n
FROM embeddings e SEMI JOIN tasks t ON e.task = t.name
WHERE e.split = 'train'
GROUP BY ALL
ORDER BY n DESC, e.model, e.max_length;
