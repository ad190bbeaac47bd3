INSERT OR REPLACE INTO checkpoints (cache_key, base_model, base_fp, task, content_hash, recipe_json, seed, path,
                                    checksum, n_examples, steps, seconds, run_id, created_at)
VALUES ($cache_key, $base_model, $base_fp, $task, $content_hash, $recipe_json, $seed, $path, $checksum,
        $n_examples, $steps, $seconds, $run_id, now());
