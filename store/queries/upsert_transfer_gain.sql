INSERT OR REPLACE INTO transfer_gains (config_hash, target, source, baseline_mean, source_mean, mean_gain, std_gain,
                                       positive_share, p_value, n_seeds, run_id, created_at)
VALUES ($config_hash, $target, $source, $baseline_mean, $source_mean, $mean_gain, $std_gain, $positive_share,
        $p_value, $n_seeds, $run_id, now());
