"""Share GAMER checkpoints on the Hugging Face Hub: one-commit uploads with remote code and a model card.

    from gamer_hf.hub import push_to_hub

    push_to_hub("runs/shop/gamer-small", "my-org/gamer-shop")            # a checkpoint folder
    push_to_hub(model, "my-org/gamer-shop", tokenizer=tokenizer)         # an in-memory model
    push_to_hub("runs/shop/gamer-small", "my-org/gamer-shop", revision="v2")  # a branch; main untouched

The folder's `gamer_training.json` and `eval_results.json` (when present) are uploaded too and
fill the card (`hub_cards/gamer_model_card.md`); `gamer-hf push` is the same from the shell.

Transformers' own paths also give loadable repos, because GAMER's `save_pretrained` writes the
remote code and a complete `auto_map`: `model.push_to_hub(repo)` uploads the model only, so also
run `tokenizer.push_to_hub(repo)` (the tokenizer holds the item index); `Trainer.push_to_hub()`
uploads the model and its `processing_class`, so build the Trainer with
`processing_class=tokenizer`. Both write Transformers' generic card and skip the GAMER metadata
files; for those, push the final folder with `push_to_hub` / `gamer-hf push`.
`save_pretrained(..., push_to_hub=True)` uploads the folder with its remote-code files as well.
"""

from .card import CARD_TAGS, NOT_RECORDED, build_model_card, card_data, load_template
from ..checkpoint import REQUIRED_FILES, check_checkpoint_dir, load_checkpoint
from ..errors import CheckpointError, HubError
from .push import DEFAULT_COMMIT_MESSAGE, PIPELINE_FILE, PushResult, build_upload_folder, push_to_hub

__all__ = [
    "CARD_TAGS",
    "DEFAULT_COMMIT_MESSAGE",
    "NOT_RECORDED",
    "PIPELINE_FILE",
    "REQUIRED_FILES",
    "CheckpointError",
    "HubError",
    "PushResult",
    "build_model_card",
    "build_upload_folder",
    "card_data",
    "check_checkpoint_dir",
    "load_checkpoint",
    "load_template",
    "push_to_hub",
]
