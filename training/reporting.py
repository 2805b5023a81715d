"""What `demvae train` prints at the end: where the model is, samples from each component, and how well the
learned components match the labels the corpus carries (the synthetic modes, DailyDialog's acts and emotions)."""

from pathlib import Path

import torch

from modeling_demvae.data import LABEL_COLUMNS
from modeling_demvae.metrics.clustering import combined_cluster_ids, label_agreement
from modeling_demvae.metrics.sentences import encode_sentences

from .arguments import SELECTION_METRICS
from .loading import load_model_and_tokenizer

MAX_COMPONENTS_SHOWN = 10


def component_codes(model, sentences) -> torch.Tensor:
    """The argmax component of q(c|x) per sentence, combined over groups into one cluster id."""
    return combined_cluster_ids(encode_sentences(model, sentences).component_probs)


def decode_code(code: int, num_groups: int, num_components: int):
    """A combined cluster id back to the component argument of `generate`: an int for one group, else a list."""
    indices = [(code // num_components ** (num_groups - 1 - g)) % num_components for g in range(num_groups)]
    return indices[0] if num_groups == 1 else indices


def component_homogeneity(model, dataset, label_columns=LABEL_COLUMNS) -> dict[str, dict[str, float]]:
    """Homogeneity, completeness and NMI of the argmax-component clusters against each label column of `dataset`
    (tokenized)."""
    columns = [c for c in label_columns if c in dataset.column_names]
    if not columns or not model.config.has_discrete_latent:
        return {}
    probs = encode_sentences(model, dataset["input_ids"][:]).component_probs
    return label_agreement(probs, {column: dataset[column][:] for column in columns})


def print_report(output_dir, data, state, selection_metric: str, *, num_samples: int = 3, seconds: float = 0.0):
    """Summary, samples per component and homogeneity for the best model saved in `output_dir`."""
    model, tokenizer = load_model_and_tokenizer(output_dir)
    config = model.config
    best = SELECTION_METRICS[selection_metric] * state.best_metric  # the stored value is signed to be maximized
    print(f"\nBest model (validation {selection_metric} {best:.3f} at step {state.best_step}) "
          f"saved in {Path(output_dir).resolve()}; finished after {state.step} steps in {seconds:.0f} s.")
    split_name = "test" if "test" in data else "validation"
    split = data[split_name]
    if config.has_discrete_latent and num_samples > 0:
        if config.num_groups == 1:
            shown = list(range(min(config.num_components, MAX_COMPONENTS_SHOWN)))
            print("Samples per component (greedy decoding from z ~ p(z|c)):")
        else:  # K**G codes: show the ones the data uses most
            codes, counts = torch.unique(component_codes(model, split["input_ids"][:]), return_counts=True)
            shown = codes[counts.argsort(descending=True)][:MAX_COMPONENTS_SHOWN].tolist()
            print("Samples from the most used components (one index per group; greedy decoding from z ~ p(z|c)):")
        for code in shown:
            component = decode_code(code, config.num_groups, config.num_components)
            sentences = tokenizer.batch_decode(model.generate(component=component, num_samples=num_samples),
                                               skip_special_tokens=True)
            print(f"  component {component}: " + " | ".join(sentences))
    for column, scores in component_homogeneity(model, split).items():
        print(f"Learned components against the {column} labels ({len(split)} {split_name} sentences): homogeneity "
              f"{scores['homogeneity']:.3f}, {scores['homogeneity_adjusted']:.3f} above its chance level "
              f"{scores['homogeneity_chance']:.3f} (completeness {scores['completeness']:.3f}, "
              f"NMI {scores['nmi']:.3f})")


__all__ = ["component_codes", "component_homogeneity", "print_report"]
