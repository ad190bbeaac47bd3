-- Transfer core: fine-tuned checkpoints, Embedding Space Maps and task-pair scores.
CREATE TABLE checkpoints (
    cache_key VARCHAR PRIMARY KEY,
    base_model VARCHAR NOT NULL,
    base_fp VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    recipe_json VARCHAR NOT NULL,
    seed INTEGER NOT NULL,
    path VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    n_examples BIGINT NOT NULL,
    steps INTEGER NOT NULL,
    seconds DOUBLE NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE esms (
    cache_key VARCHAR PRIMARY KEY,
    base_model VARCHAR NOT NULL,
    base_fp VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    data_hash VARCHAR NOT NULL,
    fit VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    dim INTEGER NOT NULL,
    path VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    heldout_mse DOUBLE,
    identity_mse DOUBLE,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE pair_scores (
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    score DOUBLE,
    rank INTEGER,
    higher_is_better BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, target, source, method)
);
