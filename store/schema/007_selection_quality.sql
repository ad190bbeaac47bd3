-- Selection quality: what training on a stored subset is worth on each target. One row per (measurement config,
-- arm, budget, seed, target, metric); an arm is a method with its parameters, and the full-pool reference is arm
-- 'full' at budget 1.0. Keyed by the measurement config (pool and target content, recipe, model, held-out rows), not
-- by the run, so a resumed or extended grid never repeats a finished fine-tune.
CREATE TABLE selection_results (
    config_hash VARCHAR NOT NULL,
    pool VARCHAR NOT NULL,
    arm VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    budget DOUBLE NOT NULL,
    seed INTEGER NOT NULL,
    target VARCHAR NOT NULL,
    subset_id VARCHAR NOT NULL,
    n_train BIGINT NOT NULL,
    train_seconds DOUBLE NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (config_hash, arm, budget, seed, target, metric)
);
