-- The cache key of every stored checkpoint (a plan's 'is it fine-tuned already?').
SELECT cache_key FROM checkpoints;
