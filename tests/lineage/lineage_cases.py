"""Names of the models made by scripts/lineage_models.py, shared by the lineage tests."""

DERIVED = (
    "requant-q8_0",
    "requant-q4_k_m",
    "permuted",
    "finetuned",
    "lora-merged",
    "pruned-10",
    "vocab-extended",
)
UNRELATED = ("gemma3-270m", "seed-1", "seed-2", "seed-3")
