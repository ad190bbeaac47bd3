-- The report: every name it can show as a target (stored tasks and measured targets).
SELECT name FROM tasks UNION SELECT target FROM transfer_gains;
