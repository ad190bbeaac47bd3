-- The report: per target, its newest stored advice, whichever method produced it ('advisor' or 'advisor+verify').
SELECT target, method, run_id, created_at
FROM advice
QUALIFY row_number() OVER (PARTITION BY target ORDER BY created_at DESC, method) = 1
ORDER BY target;
