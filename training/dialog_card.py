"""The model card of a dialog model (`DEMVAEForDialogGeneration`): what it is, how to answer a conversation with it
(the policy's action, or one chosen with `component=`), the dialog evaluation and the configuration. The sentence
model's card (`model_card.py`) dispatches here and lends its evaluation table and metadata."""

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from huggingface_hub import ModelCard

from modeling_demvae import DEMVAEConfig, DEMVAEDialogConfig

from .model_card import (
    CARD_MARKER,
    METRICS,
    _format,
    card_metadata,
    check_template,
    eval_results,
    evaluation_table,
    name_tag,
)

DIALOG_CARD_TEMPLATE = Path(str(resources.files("demvae.model_cards") / "demvae_dialog_card_template.md"))
# evaluation JSON key -> (model-index metric type, pretty name), as `demvae evaluate` writes a dialog model's
DIALOG_METRICS = {
    "bleu": ("bleu", "Response BLEU (NLTK, smoothing 1, 0-100)"),
    "sacrebleu": ("sacrebleu", "Response BLEU (sacrebleu, 0-100)"),
    "policy_accuracy": ("policy_accuracy", "Policy accuracy (argmax = gold posterior action, every group)"),
    "policy_accuracy_per_group": ("policy_accuracy_per_group", "Policy accuracy"),
    "action_consistency": ("action_consistency", "Action consistency (generated response reads back as its action)"),
    "action_consistency_per_group": ("action_consistency_per_group", "Action consistency"),
    "actions_in_use": ("actions_in_use", "Actions in use (effective components of a group, mean over groups)"),
    "actions_in_use_per_group": ("actions_in_use_per_group", "Actions in use"),
    "homogeneity": ("homogeneity", "Homogeneity of the actions"),
    **{key: METRICS[key] for key in ("homogeneity_chance", "homogeneity_adjusted", "completeness", "nmi")},
    "distinct_1": ("distinct_1", "Distinct-1 of the generated responses"),
    "distinct_2": ("distinct_2", "Distinct-2 of the generated responses"),
    "nll": ("nll", "NLL of the gold responses given their posterior z (nats per response)"),
    "ppl": ("perplexity", "Perplexity of the gold responses given their posterior z (per token)"),
    "entity_f1": ("entity_f1", "Entity F1 (kvret_entities.json, micro)"),
}
DESCRIPTION = ("a policy reads the conversation and chooses, per group, a mixture component of the response VAE: "
               "the response's latent action, which a reader can see and replace. The response decoder writes from "
               "that component's z and the conversation (a hierarchical GRU encoder, attention over its turns).")
EXAMPLE = [{"role": "user", "content": "where is the nearest gas station"}]


def dialog_usage_snippets(repo_id: str, config: DEMVAEDialogConfig) -> tuple[str, str]:
    """Python that loads the dialog model from `repo_id` and answers a conversation, through the policy's action and
    through each action chosen with `component=`: with our package, and with remote code."""
    response = config.response_config
    chosen = "k" if response.num_groups == 1 else f"[k] * {response.num_groups}"
    answering = (
        f"messages = {EXAMPLE!r}\n"
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,\n"
        "                                       return_tensors=\"pt\")\n"
        "start = inputs[\"input_ids\"].shape[1]  # the answer follows the conversation\n"
        "out = model.generate(**inputs, return_dict_in_generate=True)  # the policy chooses the action\n"
        "print(out.components.tolist(), tokenizer.decode(out.sequences[0, start:], skip_special_tokens=True))\n"
        f"for k in range({response.num_components}):  # the action chosen: component k"
        f"{'' if response.num_groups == 1 else ' in every group'}\n"
        f"    ids = model.generate(**inputs, component={chosen})\n"
        "    print(k, tokenizer.decode(ids[0, start:], skip_special_tokens=True))"
    )
    package = ("from transformers import AutoTokenizer\n\nfrom modeling_demvae import DEMVAEForDialogGeneration\n\n"
               f"model = DEMVAEForDialogGeneration.from_pretrained({repo_id!r})\n"
               f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})\n" + answering)
    remote = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
              f"model = AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True)\n"
              f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r}, trust_remote_code=True)\n" + answering)
    return package, remote


def config_rows(config: DEMVAEDialogConfig) -> list[tuple[str, object]]:
    """The dialog config's fields, then the response VAE's as `response_config.FIELD`."""
    own = [(field, getattr(config, field)) for field in DEMVAEDialogConfig.__annotations__
           if field != "response_config"]
    return own + [(f"response_config.{field}", getattr(config.response_config, field))
                  for field in DEMVAEConfig.__annotations__]


def render_dialog_card(model, *, repo_id: str, evaluations=(), datasets=None, base_model=None, license=None,
                       tags=(), training_settings: Mapping | None = None,
                       template_path: str | os.PathLike = DIALOG_CARD_TEMPLATE) -> ModelCard:
    """The model card of a dialog model, `evaluations` being `demvae evaluate` JSON contents of dialog models."""
    check_template(template_path)
    config, response, evaluations = model.config, model.config.response_config, list(evaluations)
    model_name = repo_id.split("/")[-1]
    results = [result for evaluation in evaluations for result in eval_results(evaluation, DIALOG_METRICS)]
    card_data = card_metadata(model_name, results, license=license, datasets=datasets, base_model=base_model,
                              tags=["dialog", name_tag(response.paper_name), "custom_code",
                                    "variational-autoencoder", *tags])
    package, remote = dialog_usage_snippets(repo_id, config)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        card_marker=CARD_MARKER,
        model_title=model_name,
        variant_name=response.paper_name,
        description=DESCRIPTION,
        base_model=base_model,
        num_groups=response.num_groups,
        num_components=response.num_components,
        latent_size=response.latent_size,
        context_turns=config.context_turns,
        vocab_size=response.vocab_size,
        num_parameters=f"{model.num_parameters():,}",
        usage_package=package,
        usage_remote=remote,
        evaluations=[evaluation_table(evaluation, DIALOG_METRICS) for evaluation in evaluations],
        config_rows=config_rows(config),
        training_rows=sorted((key, _format(value)) for key, value in (training_settings or {}).items()),
    )


__all__ = ["DIALOG_METRICS", "dialog_usage_snippets", "render_dialog_card"]
