-- Measured transfer: one row per (measurement config, target, source, seed, metric); source '' is the no-transfer
-- baseline. Keyed by the measurement config (not the run), so a resumed or extended grid never duplicates a run.
CREATE TABLE transfer_results (
    config_hash VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    seed INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (config_hash, target, source, seed, metric)
);

CREATE TABLE transfer_gains (
    config_hash VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    baseline_mean DOUBLE NOT NULL,
    source_mean DOUBLE NOT NULL,
    mean_gain DOUBLE NOT NULL,
    std_gain DOUBLE NOT NULL,
    positive_share DOUBLE NOT NULL,
    p_value DOUBLE,
    n_seeds INTEGER NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (config_hash, target, source)
);
