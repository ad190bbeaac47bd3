INSERT INTO runs (run_id, flow, params_json, config_hash, versions_json, device, started_at, status)
VALUES ($run_id, $flow, $params_json, $config_hash, $versions_json, $device, now(), 'running');
