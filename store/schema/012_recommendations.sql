-- recommend's answers (`flows.recommend`): per (run, target, arm) the prior and posterior of the arm's gain over no
-- transfer in points, the target fine-tunes it was measured with, and the posterior probability that it is the best.
-- source '' is the no-transfer baseline (gain 0 by definition); chosen marks the answer ('' chosen: don't transfer).
-- The pulls themselves are ordinary measured-transfer rows (transfer_results, under the advisor's recipe).
CREATE TABLE recommendations (
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    prior_gain DOUBLE,
    prior_sd DOUBLE,
    pulls INTEGER NOT NULL,
    gain DOUBLE NOT NULL,
    gain_sd DOUBLE NOT NULL,
    p_best DOUBLE NOT NULL,
    chosen BOOLEAN NOT NULL,
    confidence DOUBLE NOT NULL,
    stopped VARCHAR NOT NULL,
    noise_sd DOUBLE NOT NULL,
    correlation DOUBLE NOT NULL,
    seconds DOUBLE NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, target, source)
);
