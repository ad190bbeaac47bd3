SELECT source, seed, start_key
FROM transfer_results
WHERE config_hash = $config_hash AND target = $target AND metric = 'primary';
