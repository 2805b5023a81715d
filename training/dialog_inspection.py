"""The latent actions of a dialog model described (`demvae inspect` on a `DEMVAEForDialogGeneration`): the response
VAE's latent space pictured with the test responses placed in it, and per action (group, component) its share of the
responses, the speakers it answers as, its characteristic words and the responses it gives to a few test contexts."""

from collections import Counter
from pathlib import Path

import torch

from modeling_demvae import metrics
from modeling_demvae.dialog_data import DIALOG_LABEL_COLUMNS, DialogCollator

from .dialog_evaluation import dialog_test_split
from .evaluation import default_device, label_columns
from .inspection import (
    agreement_lines,
    characteristic_words,
    draw_categorical_components,
    draw_latent_space,
    group_summaries,
)
from .loading import load_model_and_tokenizer
from .model_folder import INSPECTION_FILES
from .threads import cpu_threads

CONTEXT_WORDS = 12  # words of a context's last turn quoted in the report


def example_rows(split, count: int) -> list[int]:
    """`count` test rows spread evenly over the split, the assistant's responses first (the system's actions)."""
    assistant = [i for i, speaker in enumerate(split["speaker"]) if speaker == "assistant"] or list(range(len(split)))
    step = max(1, len(assistant) // count)
    return assistant[::step][:count]


def quoted_context(context: list[dict]) -> str:
    """A context by its last turn, shortened: what the generated responses answer."""
    last = context[-1]
    words = last["content"].split()
    shown = " ".join(words[:CONTEXT_WORDS]) + (" ..." if len(words) > CONTEXT_WORDS else "")
    return f"{last['role']}: \"{shown}\" ({len(context)} turn{'s' * (len(context) > 1)})"


@torch.no_grad()
def responses_through(model, tokenizer, batch: dict, group: int, component: int, policy: torch.Tensor) -> list[str]:
    """Greedy responses to the batch's contexts, the group's action set to `component` and the other groups' the
    policy's."""
    components = policy.clone()
    components[:, group] = component
    prompt = batch["input_ids"][:, :2]
    ids = model.generate(prompt, context_input_ids=batch["context_input_ids"],
                         context_attention_mask=batch["context_attention_mask"], component=components)
    return [tokenizer.decode(row[2:], skip_special_tokens=True).strip() or "(empty)" for row in ids]


def speaker_shares(speakers: list[str], weights: torch.Tensor) -> str:
    """The speakers an action's responses come from, weighted by q(c|x)."""
    totals = Counter()
    for speaker, weight in zip(speakers, weights.tolist()):
        totals[speaker] += weight
    whole = sum(totals.values()) or 1.0
    return ", ".join(f"{speaker} {share / whole:.0%}" for speaker, share in totals.most_common())


def write_dialog_report(model, tokenizer, split, posterior, path: Path, *, max_groups: int, examples: int,
                        top_words: int, agreement: dict) -> None:
    """The report on the actions: per group its I(x; c), per component its share, speakers, characteristic words
    and responses to the same `examples` test contexts."""
    response = model.config.response_config
    probs = posterior.component_probs
    mixture = model.response_vae.config.has_mixture_prior  # DI-VAE's codes have no prior components to measure
    mi, spread, separation = (group_summaries(model.response_vae, posterior) if mixture
                              else (metrics.mutual_information(probs), None, None))
    rows = example_rows(split, examples)
    batch = DialogCollator(pad_token_id=response.pad_token_id)([split[i] for i in rows])
    batch = {key: value.to(model.device) for key, value in batch.items()}
    policy = model.policy(batch["context_input_ids"], batch["context_attention_mask"]).argmax(-1)
    words_only = [[ids[0], *ids[2:]] for ids in split["input_ids"]]  # the speaker token is reported apart
    lines = [f"# Latent actions of a {response.paper_name} dialog model ({response.num_groups} group(s) x "
             f"{response.num_components} components, d = {response.latent_size})", "",
             f"Placed {len(split)} test responses by their posterior action (the argmax of q(c|x) under the response "
             "VAE). Share = mean q(c|x) over them. Each component's responses answer the same test contexts, "
             "greedily, the group set to the component and the other groups at the policy's choice:", "",
             *[f"{n}. {quoted_context(split[i]['context'])}; gold: \"{split[i]['response']}\""
               for n, i in enumerate(rows, start=1)], "", *agreement_lines(agreement, len(split))]
    for group in range(min(response.num_groups, max_groups)):
        shape = f", spread = {spread[group]:.2f}, separation = {separation[group]:.2f}" if mixture else ""
        lines += [f"## Group {group}: I(x; c) = {mi[group]:.3f} nats, exp(I) = {mi[group].exp():.2f} of "
                  f"{response.num_components}{shape}", ""]
        for k in range(response.num_components):
            weights = probs[:, group, k]
            words = characteristic_words(words_only, weights, tokenizer, response, top_words)
            lines += [f"### Component {k}", "",
                      f"- share of the responses: {weights.mean():.1%} (the posterior action of "
                      f"{(probs[:, group].argmax(-1) == k).float().mean():.1%} of them); speakers: "
                      f"{speaker_shares(split['speaker'], weights)}",
                      f"- characteristic words: {', '.join(words) if words else '(none)'}",
                      "- responses through it:"]
            lines += [f"  {n}. {text}" for n, text in enumerate(
                responses_through(model, tokenizer, batch, group, k, policy), start=1)]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def inspect_dialog_command(args, output: Path) -> int:
    """`demvae inspect` on a dialog model: the response VAE's latent picture and the report on the actions."""
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device or default_device())
        model.cpu()
        split, _ = dialog_test_split(model, tokenizer, args)
        output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        posterior = metrics.encode_sentences(model.response_vae, split["input_ids"])
        posterior = type(posterior)(**{k: v.detach() for k, v in posterior.items()})
        vae = model.response_vae
        if vae.config.has_mixture_prior:
            draw = draw_categorical_components if vae.config.has_categorical_latent else draw_latent_space
            draw(vae, posterior, output / INSPECTION_FILES[0], max_groups=args.max_groups,
                 per_component=args.samples_per_component)
        else:
            print(f"{INSPECTION_FILES[0]}: skipped, DI-VAE latent actions have no mixture prior to picture.")
        labels = label_columns(split.column_names, None, known=DIALOG_LABEL_COLUMNS)
        agreement = metrics.label_agreement(posterior.component_probs, {c: split[c] for c in labels}, seed=args.seed)
        write_dialog_report(model, tokenizer, split, posterior, output / INSPECTION_FILES[1],
                            max_groups=args.max_groups, examples=args.examples, top_words=args.top_words,
                            agreement=agreement)
    written = [output / name for name in INSPECTION_FILES if (output / name).is_file()]
    print(f"wrote {' and '.join(map(str, written))}")
    return 0
