SELECT source, seed, value
FROM transfer_results
WHERE config_hash = $config_hash AND target = $target AND metric = 'primary'
ORDER BY source, seed;
