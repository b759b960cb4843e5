-- IGDS activation store. Bulk tables are written through Arrow in one transaction per shard;
-- every derived row carries the run that produced it.
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
CREATE TABLE IF NOT EXISTS examples (
    id VARCHAR PRIMARY KEY,
    task VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    response VARCHAR NOT NULL,
    meta VARCHAR,
    dataset VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_key VARCHAR PRIMARY KEY,
    name VARCHAR,
    family VARCHAR,
    n_layers INTEGER,
    d_model INTEGER,
    n_params BIGINT,
    identity VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS saes (
    sae_key VARCHAR PRIMARY KEY,
    name VARCHAR,
    source VARCHAR,
    path VARCHAR,
    site VARCHAR,
    d_in INTEGER,
    d_sae INTEGER,
    architecture VARCHAR,
    quality VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    stage VARCHAR NOT NULL,
    config VARCHAR NOT NULL,
    model_key VARCHAR,
    sae_key VARCHAR,
    status VARCHAR NOT NULL,
    n_done BIGINT DEFAULT 0,
    n_total BIGINT DEFAULT 0,
    message VARCHAR,
    igds_version VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp,
    updated TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS shards (
    run_id VARCHAR NOT NULL,
    shard_key VARCHAR NOT NULL,
    n_examples INTEGER,
    n_rows BIGINT,
    path VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, shard_key)
);
CREATE TABLE IF NOT EXISTS example_stats (
    run_id VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    n_tokens INTEGER NOT NULL,      -- positions kept for statistics (BOS and sinks excluded)
    n_positions INTEGER NOT NULL,   -- all positions of the formatted, truncated example
    n_sinks INTEGER NOT NULL,       -- positions dropped by the sink-norm guard
    shard_key VARCHAR NOT NULL,
    PRIMARY KEY (run_id, example_id)
);
-- Sparse per-(example, feature) aggregates: only features that fired on the example.
CREATE TABLE IF NOT EXISTS feature_acts (
    run_id VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    max_act REAL NOT NULL,
    sum_act REAL NOT NULL,
    n_active INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR,
    bytes BIGINT,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, kind, path)
);
