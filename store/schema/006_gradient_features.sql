-- Projected per-example gradient features (ICONS/LESS): a directory of fp16 .npy shards plus the example ids, per
-- (checkpoint, task split, labels, projection); new targets are scored against a pool without recomputing it.
CREATE TABLE gradient_features (
    cache_key VARCHAR PRIMARY KEY,
    task VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    checkpoint_key VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    dim INTEGER NOT NULL,
    checksum VARCHAR NOT NULL,
    run_id VARCHAR,
    seconds DOUBLE,
    created_at TIMESTAMP NOT NULL
);
