"""The model a config describes, for every stage that builds one.

A train.model block, a checkpoint's saved config and an artifact's config all go through
model_config: the plain GPT of model.py when they hold GPTConfig's keys only, frontier.py's
FrontierGPT when they hold any other (a FrontierConfig saves all of its keys, so its checkpoints
and artifacts come back as FrontierGPT). Train, the GPTQ Hessian pass, every eval (roundtrip,
sliding, SLOT, TTT) and entry.py build their model with build_model.
"""

from __future__ import annotations

from model import GPT, GPTConfig
from frontier import FrontierGPT, frontier_config  # bundled only when train.model sets one of its keys
from runtime import settings_from


def model_config(block: dict) -> GPTConfig:
    """GPTConfig from a model block, or FrontierConfig when it holds a key GPTConfig lacks."""
    if set(block) <= set(GPTConfig.__dataclass_fields__):
        return settings_from(GPTConfig, block)
    return frontier_config(block)


def build_model(cfg: GPTConfig | dict) -> GPT:
    """The model class cfg describes (a config object, or a saved config dict), freshly initialised."""
    if isinstance(cfg, dict):
        cfg = model_config(cfg)
    return GPT(cfg) if type(cfg) is GPTConfig else FrontierGPT(cfg)
