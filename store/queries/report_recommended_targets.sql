-- Every target with a stored recommendation, newest first.
SELECT target, max(created_at) AS created_at
FROM recommendations
GROUP BY target
ORDER BY created_at DESC, target;
