INSERT OR REPLACE INTO embeddings (cache_key, model, model_fp, task, split, pooling, max_length, normalize, precision,
                                   content_hash, path, n, dim, checksum, run_id, seconds, created_at)
VALUES ($cache_key, $model, $model_fp, $task, $split, $pooling, $max_length, $normalize, $precision,
        $content_hash, $path, $n, $dim, $checksum, $run_id, $seconds, now());
