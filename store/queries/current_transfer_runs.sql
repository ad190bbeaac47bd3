-- Every target's runs (primary metric) under its current measurement config (`current_measurements`).
SELECT r.target, r.config_hash, r.source, r.seed, r.value
FROM transfer_results r JOIN current_measurements USING (target, config_hash)
WHERE r.metric = 'primary'
ORDER BY r.target, r.source, r.seed;
