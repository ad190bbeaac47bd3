-- The source advisor's output: per (run, target, source, method) the expected gain over no transfer in points, its
-- interval, the features that drove it, and, after verification, the measured gain. method is 'advisor' or
-- 'advisor+verify'; basis is 'learned' (a model fitted on measured transfer) or 'fused' (no measured transfer to
-- learn from: fused method ranks, no gains). The ranking itself is also in pair_scores under the same method.
CREATE TABLE advice (
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    expected_gain DOUBLE,
    lower DOUBLE,
    upper DOUBLE,
    measured_gain DOUBLE,
    top_features VARCHAR NOT NULL,
    basis VARCHAR NOT NULL,
    learner VARCHAR,
    dont_transfer BOOLEAN NOT NULL,
    training_targets INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, target, source, method)
);
