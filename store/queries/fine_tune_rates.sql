-- Seconds per example-epoch of every stored fine-tune (newest first): what fine-tuning costs on this machine.
SELECT base_model, seconds / (n_examples * CAST(json_extract(recipe_json, '$.epochs') AS DOUBLE)) AS seconds_per_example_epoch
FROM checkpoints
WHERE seconds > 0 AND n_examples > 0
ORDER BY created_at DESC
LIMIT $limit;
