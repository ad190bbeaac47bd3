SELECT DISTINCT source, seed
FROM transfer_results
WHERE config_hash = $config_hash AND target = $target;
