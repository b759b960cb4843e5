-- IGDS activation store. Bulk tables are written through Arrow in one transaction (activation shards: as
-- Parquet files, see shards below);
-- every derived row carries the run that produced it.
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
-- Records are content, tasks format them: an example's own text (id = hash of prompt and response,
-- independent of any task; prompt holds the content without the task's instruction) ...
CREATE TABLE IF NOT EXISTS records (
    id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    response VARCHAR NOT NULL,
    meta VARCHAR
);
-- ... and which task uses it in which split (general: the off-task pool), brought by which dataset.
-- One membership per (task, example); the same content in two tasks has two.
CREATE TABLE IF NOT EXISTS memberships (
    dataset VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    PRIMARY KEY (task, example_id)
);
-- One row per membership, with the columns the examples table had (prompt = content).
CREATE VIEW IF NOT EXISTS examples AS
    SELECT r.id, m.task, r.source, m.split, r.prompt, r.response, r.meta, m.dataset
    FROM memberships m JOIN records r ON r.id = m.example_id;
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
-- One row per ingested extraction shard. The per-(example, feature) aggregates and the per-example stats are not
-- tables here: they stay in the shard's Parquet files (acts_file, stats_file: relative to the store's shard
-- location, meta 'shard_location') and the views feature_acts / example_stats read exactly the files listed here,
-- in seq order (igds.store.shards). Their columns:
--   feature_acts(run_id, example_id, feature INTEGER, max_act REAL, sum_act REAL, n_active INTEGER): sparse, only
--     features that fired on the example;
--   example_stats(run_id, example_id, n_tokens INTEGER, n_positions INTEGER, n_sinks INTEGER, shard_key): n_tokens =
--     positions kept for statistics (BOS and sinks excluded), n_positions = all positions of the formatted, truncated
--     example, n_sinks = positions dropped by the sink-norm guard.
CREATE TABLE IF NOT EXISTS shards (
    run_id VARCHAR NOT NULL,
    shard_key VARCHAR NOT NULL,
    n_examples INTEGER,
    n_rows BIGINT,
    path VARCHAR,                   -- where the worker wrote it (provenance)
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, shard_key)
);
-- Added with shards in place (schema 4): ingest order and the shard's files.
ALTER TABLE shards ADD COLUMN IF NOT EXISTS seq BIGINT;
ALTER TABLE shards ADD COLUMN IF NOT EXISTS acts_file VARCHAR;
ALTER TABLE shards ADD COLUMN IF NOT EXISTS stats_file VARCHAR;
CREATE TABLE IF NOT EXISTS artifacts (
    run_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR,
    bytes BIGINT,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, kind, path)
);
-- Stage 1a: frequency recall, one row per feature that fired on probe or reference.
CREATE TABLE IF NOT EXISTS recall (
    recall_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    freq_task DOUBLE, freq_ref DOUBLE,
    tok_freq_task DOUBLE, tok_freq_ref DOUBLE,
    lift DOUBLE,
    mean_act_task DOUBLE, max_act_task DOUBLE,
    is_candidate BOOLEAN, rank INTEGER,
    PRIMARY KEY (recall_id, feature)
);
-- Logit lens of every SAE feature: tokens its decoder direction promotes / suppresses.
CREATE TABLE IF NOT EXISTS feature_info (
    sae_key VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    top_tokens VARCHAR,
    bottom_tokens VARCHAR,
    PRIMARY KEY (sae_key, feature)
);
-- Top-activating contexts of a feature in an extraction run: the k examples where it fires most (by stored
-- max activation), token activations recomputed around the max token (±half_window tokens), cached so pages
-- and reports show them without the model. in_scope marks the positions the run's token scope counts.
CREATE TABLE IF NOT EXISTS feature_contexts (
    run_id VARCHAR NOT NULL,
    sae_key VARCHAR,
    feature INTEGER NOT NULL,
    k INTEGER NOT NULL,
    half_window INTEGER NOT NULL,
    rank INTEGER NOT NULL,          -- 0 = the strongest example
    example_id VARCHAR NOT NULL,
    task VARCHAR,                   -- the task the example was rendered through
    source VARCHAR,
    max_act REAL,                   -- recomputed max over in-scope positions
    stored_max REAL,                -- feature_acts.max_act of the run
    max_pos INTEGER,                -- position of the max token in the rendered example
    max_token VARCHAR,
    start_pos INTEGER,              -- position of tokens[0]
    n_positions INTEGER,            -- tokens of the rendered, truncated example
    tokens VARCHAR[],
    acts REAL[],                    -- 0 at BOS and sinks
    in_scope BOOLEAN[],
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, feature, k, half_window, rank)
);
-- Stage 1b: per-example intervention effects and their summaries.
CREATE TABLE IF NOT EXISTS effects (
    effect_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    kind VARCHAR NOT NULL,          -- amplify | ablate
    alpha DOUBLE NOT NULL,
    example_id VARCHAR NOT NULL,
    nll_base DOUBLE,
    nll_int DOUBLE
);
CREATE TABLE IF NOT EXISTS effect_summary (
    effect_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    alpha DOUBLE NOT NULL,
    n INTEGER, n_fired INTEGER,
    effect DOUBLE, ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE,
    seconds DOUBLE,
    PRIMARY KEY (effect_id, feature, kind, alpha)
);
CREATE TABLE IF NOT EXISTS attribution (
    effect_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    mean_act DOUBLE,
    est_amplify DOUBLE,
    est_ablate DOUBLE,
    PRIMARY KEY (effect_id, feature)
);
-- Stage 1b null: random directions of the candidates' median edit size and density-matched non-candidate
-- features through the same edit (alpha 1) on the same dev rows; its quantile is the effect a kept feature must beat.
CREATE TABLE IF NOT EXISTS null_effects (
    effect_id VARCHAR NOT NULL,
    null_id INTEGER NOT NULL,
    example_id VARCHAR NOT NULL,
    nll_base DOUBLE,
    nll_int DOUBLE
);
CREATE TABLE IF NOT EXISTS null_summary (
    effect_id VARCHAR NOT NULL,
    null_id INTEGER NOT NULL,
    kind VARCHAR NOT NULL,          -- direction | feature
    feature INTEGER,                -- the non-candidate feature; -1 for a direction
    matched INTEGER,                -- the candidate whose token density it matches; -1 for a direction
    edit_norm DOUBLE,               -- RMS over dev rows of the per-row edit norm
    n INTEGER, n_fired INTEGER,
    effect DOUBLE, ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE,
    seconds DOUBLE,
    PRIMARY KEY (effect_id, null_id)
);
-- Human vetting: decisions persist and apply to every later selection.
CREATE TABLE IF NOT EXISTS feature_overrides (
    task VARCHAR NOT NULL,
    sae_key VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    action VARCHAR NOT NULL,        -- veto | pin
    note VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (task, sae_key, feature)
);
CREATE TABLE IF NOT EXISTS example_overrides (
    task VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    action VARCHAR NOT NULL,        -- pin | reject
    note VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (task, example_id)
);
-- Stage 2: stored, immutable selections with lineage.
CREATE TABLE IF NOT EXISTS selections (
    selection_id VARCHAR PRIMARY KEY,  -- content hash of members + lineage
    name VARCHAR,
    task VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    pool_setting VARCHAR,
    n_pool INTEGER,
    n_selected INTEGER,
    lineage VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS selection_members (
    selection_id VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    rank INTEGER,
    score DOUBLE,
    PRIMARY KEY (selection_id, example_id)
);
-- a member's content tokens as a results-of-record file carries them (igds.experiment.record), for a store without
-- the extraction; NULL: read them from example_stats
ALTER TABLE selection_members ADD COLUMN IF NOT EXISTS n_tokens INTEGER;
-- Base-model response NLL per example (Loss and IFD baselines), computed once per model.
CREATE TABLE IF NOT EXISTS example_nll (
    model_key VARCHAR NOT NULL,     -- '<model key>|<NLL procedure>' (igds.store.results.nll_cache_key)
    example_id VARCHAR NOT NULL,
    nll_cond DOUBLE,
    nll_uncond DOUBLE,
    PRIMARY KEY (model_key, example_id)
);
-- Fine-tuning runs (LoRA adapters) with the selection they were trained on.
CREATE TABLE IF NOT EXISTS finetunes (
    run_id VARCHAR PRIMARY KEY,
    selection_id VARCHAR,           -- NULL for an ad-hoc example list
    task VARCHAR NOT NULL,
    config VARCHAR NOT NULL,        -- FinetuneConfig JSON
    model_key VARCHAR,              -- the base model the adapter sits on
    adapter_path VARCHAR,
    device VARCHAR,
    precision VARCHAR,
    seed INTEGER,
    n_train INTEGER,
    global_step INTEGER,
    train_seconds DOUBLE,
    final_loss DOUBLE,
    status VARCHAR NOT NULL,        -- done | stopped | failed
    created TIMESTAMP DEFAULT current_timestamp
);
-- Added later: examples left out for being longer than max_length (never cut); NULL for older runs.
ALTER TABLE finetunes ADD COLUMN IF NOT EXISTS n_dropped INTEGER;
-- One evaluation of a model (base or adapter) on a task split.
CREATE TABLE IF NOT EXISTS evals (
    eval_id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,        -- finetune run id, or 'base'
    model_key VARCHAR,              -- base model key (pairs an adapter eval with its base eval)
    task VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    metric VARCHAR,
    score DOUBLE,
    nll DOUBLE,
    n INTEGER,
    slice_scores VARCHAR,           -- JSON, e.g. {"le2_steps": 0.05}
    config VARCHAR,                 -- EvalConfig JSON
    seconds DOUBLE,
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS eval_outputs (
    eval_id VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    prediction VARCHAR,
    reference VARCHAR,
    score DOUBLE,
    nll DOUBLE,
    PRIMARY KEY (eval_id, example_id)
);
-- Task-feature activation of an evaluated model vs. its base: A(tuned)/A(base) - 1.
CREATE TABLE IF NOT EXISTS amplification (
    eval_id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    features VARCHAR,               -- JSON list of feature ids
    a_model DOUBLE,
    a_base DOUBLE,
    amplification DOUBLE,
    per_feature VARCHAR,            -- JSON {feature: amplification}
    created TIMESTAMP DEFAULT current_timestamp
);
-- the same measure on a density-matched random feature set (the control of the amplification–gain claim)
ALTER TABLE amplification ADD COLUMN IF NOT EXISTS control_features VARCHAR;     -- JSON list
ALTER TABLE amplification ADD COLUMN IF NOT EXISTS control_amplification DOUBLE;
-- Across the evaluated runs of a task: amplification vs. metric / NLL gain.
CREATE TABLE IF NOT EXISTS correlations (
    task VARCHAR NOT NULL,
    x_name VARCHAR NOT NULL,
    y_name VARCHAR NOT NULL,
    n INTEGER,
    pearson DOUBLE, pearson_lo DOUBLE, pearson_hi DOUBLE,
    spearman DOUBLE, spearman_lo DOUBLE, spearman_hi DOUBLE,
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (task, x_name, y_name)
);
-- Added after the first release of the schema: Neuronpedia id of SAEs from sae-lens releases.
ALTER TABLE saes ADD COLUMN IF NOT EXISTS neuronpedia_id VARCHAR;
-- Reproduction grid (igds.experiment): one row per experiment, per cell, per summarized group.
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR PRIMARY KEY,
    preset VARCHAR,
    config VARCHAR,                 -- ExperimentConfig JSON
    command VARCHAR,
    versions VARCHAR,               -- JSON {package: version}
    created TIMESTAMP DEFAULT current_timestamp,
    updated TIMESTAMP DEFAULT current_timestamp
);
-- JSON: per task the method presets' configs, intervention runs and F*, the overrides, sequence lengths
ALTER TABLE experiments ADD COLUMN IF NOT EXISTS provenance VARCHAR;
CREATE TABLE IF NOT EXISTS experiment_cells (
    experiment_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    pool_setting VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    ratio DOUBLE NOT NULL,
    seed INTEGER NOT NULL,
    selection_id VARCHAR,
    run_id VARCHAR,
    eval_id VARCHAR,
    status VARCHAR,
    seconds DOUBLE,
    updated TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (experiment_id, task, pool_setting, method, ratio, seed)
);
ALTER TABLE experiment_cells ADD COLUMN IF NOT EXISTS note VARCHAR;  -- why a cell is empty
CREATE TABLE IF NOT EXISTS experiment_results (
    experiment_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    pool_setting VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    ratio DOUBLE NOT NULL,
    n_runs INTEGER, n_train DOUBLE, n_eval INTEGER, metric VARCHAR,
    score DOUBLE, score_lo DOUBLE, score_hi DOUBLE,
    d_score DOUBLE, d_score_lo DOUBLE, d_score_hi DOUBLE,   -- minus Random at the main ratio, paired
    nll DOUBLE, nll_lo DOUBLE, nll_hi DOUBLE,
    d_nll DOUBLE, d_nll_lo DOUBLE, d_nll_hi DOUBLE,
    amplification DOUBLE,
    base_score DOUBLE, base_nll DOUBLE,
    PRIMARY KEY (experiment_id, task, pool_setting, method, ratio)
);
ALTER TABLE experiment_results ADD COLUMN IF NOT EXISTS n_dropped DOUBLE;     -- mean long examples dropped per run
ALTER TABLE experiment_results ADD COLUMN IF NOT EXISTS n_selected DOUBLE;    -- mean selection size per run
ALTER TABLE experiment_results ADD COLUMN IF NOT EXISTS control_amplification DOUBLE;
CREATE TABLE IF NOT EXISTS experiment_correlations (
    experiment_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    y_name VARCHAR NOT NULL,        -- metric_gain | nll_gain, against amplification
    n INTEGER,
    pearson DOUBLE, pearson_lo DOUBLE, pearson_hi DOUBLE,
    spearman DOUBLE, spearman_lo DOUBLE, spearman_hi DOUBLE,
    PRIMARY KEY (experiment_id, task, y_name)
);
ALTER TABLE experiment_correlations ADD COLUMN IF NOT EXISTS x_name VARCHAR;   -- amplification | control_amplification
ALTER TABLE experiment_correlations ADD COLUMN IF NOT EXISTS subset VARCHAR;   -- which cells (e.g. a fixed size)
ALTER TABLE experiment_correlations ADD COLUMN IF NOT EXISTS partial VARCHAR;  -- covariate partialled out, or NULL
-- The noisy pool (igds.data.noise): its members (kept train items and corrupted ones alike; nothing on a row says
-- which) under the key of the train set and spec it was built from, and apart from them the corruption labels,
-- which only the report reads.
CREATE TABLE IF NOT EXISTS noisy_pool (
    task VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    build_key VARCHAR NOT NULL,     -- sha256 of the NoiseSpec and the train ids it was built from
    PRIMARY KEY (task, example_id)
);
CREATE TABLE IF NOT EXISTS corruption_labels (
    task VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,    -- the corrupted pool item
    kind VARCHAR NOT NULL,          -- swapped | cut_answer | untranslated | cut_synopsis
    source_id VARCHAR NOT NULL,     -- the train item it replaced
    PRIMARY KEY (task, example_id)
);
-- Bring your own data (igds.data.ingest): a dataset is a validated file (or hub split) stored as records; its
-- rows keep their order and, when mapped, their split label. Tasks (igds.workflow.catalog) turn rows into
-- memberships.
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,          -- file | hub | shipped
    origin VARCHAR,                 -- the file path or '<hub id>[:config]:<split>' it was read from
    content_sha256 VARCHAR,         -- sha256 of the file's bytes (hub: of the mapped rows)
    mapping VARCHAR,                -- JSON ColumnMapping
    n_rows INTEGER,                 -- rows read
    n_records INTEGER,              -- distinct records (rows with the same prompt and response are one)
    created TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS dataset_rows (
    dataset VARCHAR NOT NULL,
    row_no INTEGER NOT NULL,        -- 1-based, in file order
    example_id VARCHAR NOT NULL,
    split_label VARCHAR,            -- the row's value in the mapped split column, if any
    PRIMARY KEY (dataset, row_no)
);
-- Tasks defined in the workspace: the TaskSpec (instruction, system prompt, metric, answer extraction) and
-- where its items come from (TaskData: eval datasets and how they split, pool datasets); every process sees them.
CREATE TABLE IF NOT EXISTS tasks (
    name VARCHAR PRIMARY KEY,
    spec VARCHAR NOT NULL,          -- JSON TaskSpec
    data VARCHAR NOT NULL,          -- JSON TaskData
    counts VARCHAR,                 -- JSON {split: n} written when the memberships were made
    created TIMESTAMP DEFAULT current_timestamp
);
-- The spec each model / SAE was loaded from (JSON ModelSpec / SaeSpec), so any process can load it again.
ALTER TABLE models ADD COLUMN IF NOT EXISTS spec VARCHAR;
ALTER TABLE saes ADD COLUMN IF NOT EXISTS spec VARCHAR;
-- == vetting (issue 16): sessions, decisions, token activations for highlights ==
-- Token activations the vetting queue highlights, stored once per pool so no click runs the model
-- (igds.workflow.highlights): per extraction run, task (whose pool and candidate features) and pool example, the
-- tokens as extraction rendered them, each position's in-scope flag and the features computed ...
CREATE TABLE IF NOT EXISTS highlight_tokens (
    run_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,          -- the task whose pool the example is in
    example_id VARCHAR NOT NULL,
    tokens VARCHAR[] NOT NULL,      -- decoded tokens of the rendered, truncated example
    in_scope BOOLEAN[] NOT NULL,    -- positions the run's token scope counts (BOS and sinks: false)
    features INTEGER[] NOT NULL,    -- features computed (one absent from highlight_acts never fired)
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, task, example_id)
);
-- ... and the nonzero activations: one row per (example, feature that fired anywhere in it).
CREATE TABLE IF NOT EXISTS highlight_acts (
    run_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    example_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    positions INTEGER[] NOT NULL,   -- ascending positions where it is nonzero
    acts REAL[] NOT NULL,           -- its activation there
    PRIMARY KEY (run_id, task, example_id, feature)
);
-- A vetting session: one user's decisions on one task's pool, started from the live selection's settings
-- (selection_id NULL) or for a stored selection; a selection saved from the session is recorded in it too.
CREATE TABLE IF NOT EXISTS vetting_sessions (
    session_id VARCHAR PRIMARY KEY,
    task VARCHAR NOT NULL,
    extract_run VARCHAR,
    pool_setting VARCHAR,
    pool_limit INTEGER,
    selection_id VARCHAR,
    settings VARCHAR,               -- JSON: the selection and resonance configs the session started with
    user_name VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp
);
-- Its decisions, an append-only log: seq numbers every action of the session (one decision, or one bulk
-- decision's rows, share a seq); an example's decision is its latest row not undone; undo marks the latest
-- action's rows with the seq of the undo (so the decisions as of any seq can be read back).
CREATE TABLE IF NOT EXISTS vetting_decisions (
    session_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    example_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,      -- accept | reject | skip
    note VARCHAR,
    user_name VARCHAR,
    decided TIMESTAMP DEFAULT current_timestamp,
    undone_seq INTEGER,             -- NULL: in force
    PRIMARY KEY (session_id, seq, example_id)
);
-- == end vetting ==
-- == exploration (issue 16): feature labels and notes ==
-- A researcher's label and note for an SAE feature (one per feature of an SAE, shared by every task), searchable
-- on the Features and Text lens pages; author is who saved it last.
CREATE TABLE IF NOT EXISTS feature_labels (
    sae_key VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    label VARCHAR NOT NULL,
    note VARCHAR,
    author VARCHAR,
    updated TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sae_key, feature)
);
-- == end exploration ==
-- == feature checks (issue 16): token injection, cross-seed stability ==
-- One row per (SAE, feature, check): token_injection (value = share of reference texts the feature fires on above
-- half its median top activation once its top tokens are inserted; flagged = a token detector) or seed_match
-- (value = best decoder cosine with the other seed's SAE; flagged = unstable across seeds).
CREATE TABLE IF NOT EXISTS feature_checks (
    sae_key VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    check_name VARCHAR NOT NULL,
    value DOUBLE,
    flagged BOOLEAN,
    detail VARCHAR,                 -- JSON: the injected tokens, thresholds, the other SAE, ...
    created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sae_key, feature, check_name)
);
-- == end feature checks ==
