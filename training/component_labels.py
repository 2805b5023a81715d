"""Naming the components of a model trained without labels by their majority label (see `demvae label-components
--help`): what the command runs once its options are checked."""

import json
from collections import Counter
from pathlib import Path

import torch

from modeling_demvae import DEMVAEConfig, data, metrics
from modeling_demvae.arrow_rows import ColumnRows
from modeling_demvae.corpus_cache import prepared_text, tokenized_split

from .files import write_text_atomically
from .loading import load_model_and_tokenizer
from .model_card import write_model_card
from .threads import cpu_threads


def group_for(assignments: torch.Tensor, labels: list) -> tuple[int, float]:
    """The group whose argmax components are most homogeneous with respect to `labels`, and that homogeneity."""
    scores = [metrics.cluster_scores(assignments[:, g], labels)["homogeneity"] for g in range(assignments.shape[1])]
    best = max(range(len(scores)), key=lambda g: (scores[g], -g))
    return best, scores[best]


def majority_labels(components: list[int], labels: list[str], num_components: int) -> list[tuple[str, float, int]]:
    """(majority label, its share, sentence count) per component; ("", 0, 0) for a component no sentence picked."""
    counts = [Counter() for _ in range(num_components)]
    for component, label in zip(components, labels, strict=True):
        counts[component][label] += 1
    rows = []
    for count in counts:
        total = sum(count.values())
        label, most = min(count.items(), key=lambda item: (-item[1], item[0])) if total else ("", 0)  # ties: a-z
        rows.append((label, most / total if total else 0.0, total))
    return rows


def label_attribute(assignments: torch.Tensor, values: list, names: dict, num_components: int):
    """The unsupervised attribute spec of one label column, with its group, homogeneity and table rows."""
    group, homogeneity = group_for(assignments, values)
    named = [names[value] for value in values]
    rows = majority_labels(assignments[:, group].tolist(), named, num_components)
    mapping = {label: [k for k, row in enumerate(rows) if row[0] == label] for label in names.values()}
    spec = {"group": group, "variable": None, "labels": list(names.values()), "supervised": False, "values": mapping}
    return spec, homogeneity, rows


def write_attributes(folder: Path, attributes: dict) -> None:
    """Merge `attributes` into the folder's config.json, checked by DEMVAEConfig first, written atomically."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["attributes"] = {**config.get("attributes", {}), **attributes}
    config["attributes"] = DEMVAEConfig.from_dict(config).attributes  # validated and normalized
    write_text_atomically(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def label_components(args, folder: Path) -> int:
    """`demvae label-components`, its options checked: each label column mapped to a group's components, printed,
    and written into the folder's config.json."""
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(folder)
        config = model.config
        if config.variant not in ("dem", "discrete", "semi"):
            raise ValueError(f"variant={config.variant!r} has no components to label.")
        supervised = [name for name in args.labels if config.attributes.get(name, {}).get("supervised")]
        if supervised:
            raise ValueError(f"{supervised} are supervised attributes of this model already; their components are "
                             "label i = component i.")
        corpus = prepared_text(args.dataset, text_column=args.text_column, data_dir=args.data_dir).splits()
        if args.split not in corpus:
            raise ValueError(f"{args.dataset} has no {args.split} split; it has {list(corpus)}.")
        split = corpus[args.split]
        missing = [column for column in args.labels if column not in split.column_names]
        if missing:
            raise ValueError(f"label column(s) {missing} not in {args.dataset}; it has {split.column_names}.")
        split = tokenized_split(split, tokenizer, max_length=config.max_sentence_length)
        if args.max_sentences:
            split = split.select(range(min(args.max_sentences, len(split))))
        assignments = metrics.encode_sentences(model, ColumnRows(split, "input_ids"),
                                               progress=not args.no_progress).component_probs.argmax(-1)
        attributes = {}
        for column in args.labels:
            values = split[column]
            labelled = [i for i, value in enumerate(values) if value is not None]
            names = data.label_names(column, values)
            spec, homogeneity, rows = label_attribute(assignments[labelled], [values[i] for i in labelled], names,
                                                      config.num_components)
            attributes[column] = spec
            print(f"{column}: group {spec['group']} (homogeneity {homogeneity:.3f}, {len(labelled)} {args.split} "
                  "sentences)")
            print(f"  {'component':>9}  {'majority label':<16} {'share':>6} {'count':>7}")
            for k, (label, share, count) in enumerate(rows):
                print(f"  {k:>9}  {label or '(none)':<16} {share:>6.2f} {count:>7}")
            unmapped = [label for label, components in spec["values"].items() if not components]
            if unmapped:
                print(f"  no component for: {', '.join(unmapped)}")
        write_attributes(folder, attributes)
        print(f"wrote the mapping into {folder / 'config.json'}")
    write_model_card(folder)
    return 0
