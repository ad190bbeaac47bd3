-- The one rule for "a target's measurement": each target's current measurement config is the config whose gain
-- summaries were stored last (a measurement is summarised when it completes; ties broken by the config hash, so the
-- choice never depends on scan order). Every reader of measured transfer goes through this view: a target's gains
-- and its evaluation (`latest_transfer_gains`), the leave-one-target-out source prior (`source_prior`), the report
-- (`report_latest_gains`) and the advisor's workspace data (`current_transfer_runs`). Two configs of one target
-- never mix; different targets may each be current under a different config (the prior averages them; the advisor
-- keeps only the targets current under its own recipe).
SELECT target, config_hash, newest AS measured_at
FROM (
    SELECT target, config_hash, newest,
           row_number() OVER (PARTITION BY target ORDER BY newest DESC, config_hash DESC) AS place
    FROM (SELECT target, config_hash, max(created_at) AS newest FROM transfer_gains GROUP BY target, config_hash)
)
WHERE place = 1
