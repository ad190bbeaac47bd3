INSERT OR REPLACE INTO esms (cache_key, base_model, base_fp, source, data_hash, checkpoint_key, fit, params_json, dim,
                             path, checksum, heldout_mse, identity_mse, run_id, created_at)
VALUES ($cache_key, $base_model, $base_fp, $source, $data_hash, $checkpoint_key, $fit, $params_json, $dim, $path,
        $checksum, $heldout_mse, $identity_mse, $run_id, now());
