-- Every target with at least one measured-transfer run, under any config.
SELECT DISTINCT target FROM transfer_results WHERE metric = 'primary' ORDER BY target;
