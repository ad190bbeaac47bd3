-- Training-subset selection. `example_scores`: one per-example score per (scoring config, pool example), e.g. a
-- VoG variance or an influence; for GIO the KL reached when the example was picked. `selections`: one row per
-- stored subset, keyed by the selection config (pool and target content, method, budget, parameters, encoder),
-- so re-running a selection finds it; `selection_members`: its example ids in selection order (rank 1 first).
CREATE TABLE example_scores (
    config_hash VARCHAR NOT NULL,
    pool VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (config_hash, pool, example_id)
);

CREATE TABLE selections (
    subset_id VARCHAR PRIMARY KEY,
    pool VARCHAR NOT NULL,
    pool_split VARCHAR NOT NULL,
    pool_hash VARCHAR NOT NULL,
    targets VARCHAR[] NOT NULL,
    method VARCHAR NOT NULL,
    budget DOUBLE,
    budget_kind VARCHAR NOT NULL,
    n_pool BIGINT NOT NULL,
    n_selected BIGINT NOT NULL,
    params_json VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE selection_members (
    subset_id VARCHAR NOT NULL,
    rank BIGINT NOT NULL,
    example_id VARCHAR NOT NULL,
    PRIMARY KEY (subset_id, rank)
);
