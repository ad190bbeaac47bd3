-- Core catalog: tasks, runs and the embedding cache. Paths are relative to the workspace root.
CREATE TABLE tasks (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    input VARCHAR NOT NULL,
    label_names VARCHAR[] NOT NULL,
    content_hash VARCHAR NOT NULL,
    source_uri VARCHAR,
    license VARCHAR,
    n_train BIGINT NOT NULL,
    n_validation BIGINT NOT NULL,
    n_test BIGINT NOT NULL,
    warnings VARCHAR[] NOT NULL,
    derived_splits_json VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    added_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    flow VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    versions_json VARCHAR NOT NULL,
    device VARCHAR,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,
    timings_json VARCHAR,
    error VARCHAR
);

CREATE TABLE embeddings (
    cache_key VARCHAR PRIMARY KEY,
    model VARCHAR NOT NULL,
    model_fp VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    pooling VARCHAR NOT NULL,
    max_length INTEGER NOT NULL,
    normalize BOOLEAN NOT NULL,
    precision VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    dim INTEGER NOT NULL,
    checksum VARCHAR NOT NULL,
    run_id VARCHAR,
    seconds DOUBLE,
    created_at TIMESTAMP NOT NULL
);
