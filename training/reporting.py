"""What `demvae train` prints at the end: where the model is, samples from each component, and how well the
learned components match the labels the corpus carries (the synthetic modes, DailyDialog's acts and emotions)."""

from pathlib import Path

import torch
from sklearn.metrics import homogeneity_score
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEForGeneration
from modeling_demvae.metrics.sentences import encode_sentences

LABEL_COLUMNS = ("mode", "act", "emotion")
MAX_COMPONENTS_SHOWN = 10


def component_codes(model, sentences) -> torch.Tensor:
    """The argmax component of q(c|x) per sentence, combined over groups into one integer code (mixed radix K)."""
    probs = encode_sentences(model, sentences).component_probs  # (N, G, K)
    radix = model.config.num_components ** torch.arange(probs.shape[1])
    return (probs.argmax(-1) * radix).sum(-1)


def decode_code(code: int, num_groups: int, num_components: int):
    """A combined code back to the component argument of `generate`: an int for one group, else a list."""
    indices = [(code // num_components**g) % num_components for g in range(num_groups)]
    return indices[0] if num_groups == 1 else indices


def component_homogeneity(model, dataset, label_columns=LABEL_COLUMNS) -> dict[str, float]:
    """Homogeneity of the argmax-component clusters against each label column of `dataset` (tokenized)."""
    columns = [c for c in label_columns if c in dataset.column_names]
    if not columns or not model.config.has_discrete_latent:
        return {}
    codes = component_codes(model, dataset["input_ids"]).tolist()
    return {column: homogeneity_score(dataset[column], codes) for column in columns}


def print_report(output_dir, data, state, selection_metric: str, *, num_samples: int = 3, seconds: float = 0.0):
    """Summary, samples per component and homogeneity for the best model saved in `output_dir`."""
    model = DEMVAEForGeneration.from_pretrained(output_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(output_dir)
    config = model.config
    sign = 1 if selection_metric == "elbo" else -1
    print(f"\nBest model (validation {selection_metric} {sign * state.best_metric:.3f} at step {state.best_step}) "
          f"saved in {Path(output_dir).resolve()}; finished after {state.step} steps in {seconds:.0f} s.")
    split = data["test"] if "test" in data else data["validation"]
    if config.has_discrete_latent and num_samples > 0:
        if config.num_groups == 1:
            shown = list(range(min(config.num_components, MAX_COMPONENTS_SHOWN)))
            print("Samples per component (greedy decoding from z ~ p(z|c)):")
        else:  # K**G codes: show the ones the data uses most
            shown = torch.bincount(component_codes(model, split["input_ids"])).argsort(descending=True)
            shown = shown[:MAX_COMPONENTS_SHOWN].tolist()
            print("Samples from the most used components (one index per group; greedy decoding from z ~ p(z|c)):")
        for code in shown:
            component = decode_code(code, config.num_groups, config.num_components)
            sentences = tokenizer.batch_decode(model.generate(component=component, num_samples=num_samples),
                                               skip_special_tokens=True)
            print(f"  component {component}: " + " | ".join(sentences))
    for column, score in component_homogeneity(model, split).items():
        print(f"Homogeneity of the learned components against the {column} labels ({len(split)} sentences): "
              f"{score:.3f}")


__all__ = ["component_codes", "component_homogeneity", "print_report"]
