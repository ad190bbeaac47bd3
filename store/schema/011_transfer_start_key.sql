-- Each measured-transfer run names what it started from: for a source run, the cache key of the source checkpoint
-- it was tuned after (`flows.checkpoints.checkpoint_key`: base-model fingerprint, the source's exact rows, recipe,
-- seed); for the no-transfer baseline, the base model's fingerprint. The config hash covers the target's side only,
-- so a run counts as done only while this key is still the one a plan would start from. Rows stored before this
-- migration, and runs imported without one (bench/ranking_quality.py's atlas import), keep NULL: `measure_transfer`
-- treats them as stale and measures them again.
ALTER TABLE transfer_results ADD COLUMN start_key VARCHAR;
