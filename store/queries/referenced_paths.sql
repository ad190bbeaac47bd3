-- Every artefact path a catalog row points to (workspace-relative).
SELECT path FROM tasks
UNION ALL SELECT path FROM embeddings
UNION ALL SELECT path FROM checkpoints
UNION ALL SELECT path FROM esms
UNION ALL SELECT path FROM gradient_features;
