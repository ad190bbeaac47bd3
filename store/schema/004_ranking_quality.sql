-- How well each stored ranking of a target predicts its measured transfer (plus the random and source-prior
-- baselines), one row per metric.
CREATE TABLE ranking_quality (
    run_id VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    ranking_run_id VARCHAR,
    measured_config VARCHAR NOT NULL,
    n_sources INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, target, method, metric)
);
