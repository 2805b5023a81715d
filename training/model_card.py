"""The model card: one function renders it from a model folder for both of its places: MODEL/README.md, written by
the commands that write a model (`train`, `label-components`) or its numbers (`evaluate`), and the README.md of a
`demvae push`. It carries the evaluation as the Hub's model-index, usage snippets, and samples per component.
"""

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from modeling_demvae import DEMVAEConfig, DEMVAEDialogConfig

from .console import plural
from .files import write_text_atomically
from .loading import load_model_and_tokenizer
from .model_folder import CARD_SIGNATURE, EVALUATION_FILE, checked_model_folder, training_summary

CARD_TEMPLATE = Path(str(resources.files("demvae.model_cards") / "demvae_card_template.md"))
LATENT_IMAGE_NAME = "latent_space.png"
INSPECTION_IMAGE = Path("inspection") / LATENT_IMAGE_NAME  # where `demvae inspect MODEL` puts its picture
CARD_FILE = "README.md"
CARD_MARKER = (f"{CARD_SIGNATURE}: `demvae train`, `label-components` and `evaluate` write it again; delete this "
               "line to keep your own edits. -->")
TASK = "text-generation"

# evaluation JSON key -> (model-index metric type, pretty name); per-group lists go to the model-index as their
# sum (mutual information adds up over independent groups) or mean (the other per-group numbers)
METRICS = {
    "elbo": ("elbo", "ELBO (nats per sentence)"),
    "nll": ("nll", "NLL (importance-weighted, nats per sentence)"),
    "ppl": ("perplexity", "Perplexity (per token)"),
    "rppl": ("rppl", "Reverse perplexity"),
    "bleu": ("bleu", "Reconstruction BLEU (NLTK, smoothing 1, 0-100)"),
    "sacrebleu": ("sacrebleu", "Reconstruction BLEU (sacrebleu, 0-100)"),
    "wkl": ("wkl", "Unigram KL to the training set (wKL)"),
    "homogeneity": ("homogeneity", "Homogeneity"),
    "homogeneity_chance": ("homogeneity_chance", "Homogeneity, labels shuffled (chance)"),
    "homogeneity_adjusted": ("homogeneity_above_chance", "Homogeneity above chance"),
    "completeness": ("completeness", "Completeness"),
    "nmi": ("nmi", "NMI"),
    "mi": ("mutual_information", "I(x; c) on the test set (nats)"),
    "batch_mi": ("batch_mutual_information", "I(x; c) in training-size batches, summed over {groups} (nats)"),
    "active_components": ("active_components", "Effective components exp(I(x; c))"),
    "component_spread": ("component_spread", "Component spread ({unit})"),
    "component_separation": ("component_separation", "Nearest-component distance ({unit})"),
    "dispersion": ("dispersion", "Dispersion L_d"),
    "control_accuracy": ("control_accuracy", "Control accuracy, macro over labels"),
    "control_per_label": ("control_accuracy_per_label", "Control accuracy"),
    "control_ceiling": ("control_classifier_accuracy",
                        "Control classifier macro accuracy on real test sentences (ceiling)"),
}
SUMMED_OVER_GROUPS = ("mi",)
CONTROL_KEYS = ("control_accuracy", "control_per_label", "control_ceiling")  # measured with the config's labels
# evaluation settings that only some metrics depend on -> those metrics: a card lists them beside their numbers only
METRIC_SETTINGS = {
    "nll_samples": ("elbo", "nll", "ppl"),
    "rppl_preset": ("rppl", "wkl"),
    "rppl_samples": ("rppl", "wkl"),
    "rppl_max_epochs": ("rppl",),
    "wkl_smoothing": ("wkl",),
    "control_samples": ("control_accuracy", "control_per_label"),
}
GAUSSIAN_DISTANCE = "pooled standard deviations"  # the unit of evaluations that predate `component_distance`

VARIANT_DESCRIPTIONS = {
    "dem": "a GRU sentence VAE whose prior is a mixture of Gaussians per latent group; each component is a mode of "
    "the data that `generate(component=...)` samples from.",
    "vae": "a GRU sentence VAE with one Gaussian latent and an N(0, I) prior.",
    "discrete": "a GRU sentence autoencoder with discrete latent codes (Gumbel-softmax in training).",
    "semi": "a GRU sentence VAE with a Gaussian latent and discrete codes side by side.",
    "rnnlm": "the GRU decoder alone, a language model without latent variables.",
}
CATEGORICAL_DESCRIPTION = ("a GRU sentence VAE whose latent is, per group, categorical variables fed one-hot to the "
                           "decoder, with a mixture prior of products of categoricals; each component is a mode of "
                           "the data that `generate(component=...)` samples from.")


def load_evaluation(path: str | os.PathLike) -> dict:
    """An evaluation JSON written by `demvae evaluate`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation JSON not found: {path} (write one with `demvae evaluate --output`).")
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); give the file `demvae evaluate` wrote.") from None
    if not isinstance(evaluation, dict) or not set(evaluation) & set(METRICS):
        raise ValueError(f"{path} holds no evaluation results: expected some of the keys {sorted(METRICS)}.")
    return evaluation


def _public(value: str) -> str:
    """A local path by its last part only: cards are public, the folders of the machine that wrote them are not."""
    return Path(value).name if os.sep in value and os.path.exists(value) else value


def _dataset_name(evaluation: Mapping) -> str:
    """The evaluation set as its settings name it: the dataset, else the test file."""
    settings = evaluation.get("settings") or {}
    for key in ("dataset", "test_file"):
        if settings.get(key):
            return _public(str(settings[key]))
    return "evaluation data"


def _metric_names(evaluation: Mapping, metrics: Mapping = METRICS):
    """(key, metric type, pretty name) of every metric of `metrics` (key -> (type, pretty name)), distances named in
    the unit the evaluation measured them in and sums over groups with their number (that of the per-group
    I(x; c))."""
    unit = evaluation.get("component_distance", GAUSSIAN_DISTANCE)
    per_group = evaluation.get("mi")
    groups = plural(len(per_group), "group") if isinstance(per_group, list) else "groups"
    return [(key, metric_type, pretty.format(unit=unit, groups=groups))
            for key, (metric_type, pretty) in metrics.items()]


def _metrics(evaluation: Mapping, names: Mapping) -> list[tuple[str, str, str | None, float]]:
    """(metric type, pretty name, config, value) for every measured number of `names`, one per homogeneity label."""
    metrics = []
    for key, metric_type, pretty in _metric_names(evaluation, names):
        value = evaluation.get(key)
        if isinstance(value, Mapping):  # homogeneity: label -> score
            metrics += [(metric_type, f"{pretty} ({label})", str(label), v) for label, v in value.items()]
        elif isinstance(value, (list, tuple)) and value:
            summed = key in SUMMED_OVER_GROUPS
            total = sum(value) if summed else sum(value) / len(value)
            label = f"{pretty}, {'sum' if summed else 'mean'} over {plural(len(value), 'group')}"
            metrics.append((metric_type, label, None, total))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.append((metric_type, pretty, None, value))
    return [m for m in metrics if m[3] is not None and math.isfinite(m[3])]


def eval_results(evaluation: Mapping, metrics: Mapping = METRICS) -> list[EvalResult]:
    """The model-index entries of one evaluation JSON (its `metrics`: key -> (type, pretty name))."""
    name = _dataset_name(evaluation)
    dataset_type = name.split(".")[0].replace(" ", "-")
    return [
        EvalResult(task_type=TASK, task_name="Text generation", dataset_type=dataset_type, dataset_name=name,
                   metric_type=metric_type, metric_name=pretty, metric_config=config, metric_value=float(value))
        for metric_type, pretty, config, value in _metrics(evaluation, metrics)
    ]


def _format(value) -> str:
    """A number to 4 significant digits, a list of them, or a public text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return _public(value) if isinstance(value, str) else str(value)


def evaluation_table(evaluation: Mapping, metrics: Mapping = METRICS) -> dict:
    """One card section: the metrics (per-group lists in full) and the settings they were measured with, those of
    a metric that is not in the evaluation left out."""
    rows, measured = [], set()
    for key, _, pretty in _metric_names(evaluation, metrics):
        value = evaluation.get(key)
        if isinstance(value, Mapping):
            rows += [(f"{pretty} ({label})", _format(v)) for label, v in value.items()]
        elif value is not None:
            rows.append((pretty + (", per group" if isinstance(value, (list, tuple)) else ""), _format(value)))
        if value not in (None, {}):
            measured.add(key)
    settings = sorted((key, _format(v)) for key, v in (evaluation.get("settings") or {}).items()
                      if v is not None and (key not in METRIC_SETTINGS or measured & set(METRIC_SETTINGS[key])))
    return {"dataset_name": _dataset_name(evaluation), "rows": rows, "settings": settings}


def _component_value(config: DEMVAEConfig, k) -> str:
    return str(k) if config.num_groups == 1 else f"[{k}] * {config.num_groups}"


def usage_snippets(repo_id: str, config: DEMVAEConfig) -> tuple[str, str]:
    """Python that loads the model from `repo_id` and prints samples: with our package, and with remote code."""
    if config.has_discrete_latent:
        per_group = "" if config.num_groups == 1 else "  # one component index per group"
        sampling = (
            f"for k in range({config.num_components}):\n"
            f"    ids = model.generate(component={_component_value(config, 'k')}, num_samples=3){per_group}\n"
            "    print(k, tokenizer.batch_decode(ids, skip_special_tokens=True))"
        )
    else:
        sampling = "ids = model.generate(num_samples=3)\nprint(tokenizer.batch_decode(ids, skip_special_tokens=True))"
    for name, spec in config.attributes.items():  # generation by label, with the first label that has a latent value
        label = next((label for label in spec["labels"] if spec["values"][label]), None)
        if label is not None:
            sampling += (f"\nids = model.generate(attributes={{{name!r}: {label!r}}}, num_samples=3)  # labels: "
                         f"{', '.join(spec['labels'])}\nprint(tokenizer.batch_decode(ids, skip_special_tokens=True))")
            break
    package = (
        "from transformers import AutoTokenizer\n\nfrom modeling_demvae import DEMVAEForGeneration\n\n"
        f"model = DEMVAEForGeneration.from_pretrained({repo_id!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})\n" + sampling
    )
    remote = (  # the tokenizer too: AutoTokenizer reads the config, which names our remote classes
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f"model = AutoModelForCausalLM.from_pretrained({repo_id!r}, trust_remote_code=True)\n"
        f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r}, trust_remote_code=True)\n" + sampling
    )
    return package, remote


@torch.no_grad()
def component_samples(model, tokenizer, *, num_samples: int = 3, max_groups: int = 3, seed: int = 0) -> list[dict]:
    """Greedy decodes of prior latents, per component: {"title", "sentences"} blocks; one block without components.

    With G > 1 groups, group g is held at component k and the other groups are drawn from the prior, for the
    first `max_groups` groups. All blocks are decoded in one `generate` call.
    """
    config = model.config
    generator = torch.Generator(device=model.device).manual_seed(seed)
    if not config.has_discrete_latent:
        titles, latents = ["Prior"], [model.sample_prior(num_samples, generator=generator)]
    else:
        titles, latents = [], []
        for group in range(min(config.num_groups, max_groups)):
            for k in range(config.num_components):
                component = torch.randint(config.num_components, (num_samples, config.num_groups),
                                          generator=generator, device=model.device)
                component[:, group] = k
                titles.append(f"Component {k}" if config.num_groups == 1 else f"Group {group}, component {k}")
                latents.append(model.sample_prior(num_samples, component, generator=generator))
    sentences = tokenizer.batch_decode(model.generate(latent=torch.cat(latents)), skip_special_tokens=True)
    sentences = [sentence.strip() or "(empty sentence)" for sentence in sentences]
    return [{"title": title, "sentences": sentences[i * num_samples:(i + 1) * num_samples]}
            for i, title in enumerate(titles)]


def name_tag(name: str) -> str:
    """A paper name as a Hub tag: "DGM-VAE + MI" -> "dgm-vae-mi"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower())


def card_metadata(model_name: str, results: list[EvalResult], *, license, datasets, base_model,
                  tags: Iterable[str]) -> ModelCardData:
    """The card's metadata: the package's tags, then `tags`, and the evaluation as model-index."""
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=TASK,
        license=license,
        datasets=datasets or None,
        base_model=base_model,
        tags=["demvae", "text-generation", *tags],
        model_name=model_name if results else None,  # the model-index's name, nothing without one
        eval_results=results or None,
    )


def check_template(path) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"model card template not found: {path} (install the demvae package).")


def render_model_card(
    model,
    tokenizer,
    *,
    repo_id: str,
    evaluations: Iterable[Mapping] = (),
    datasets: list[str] | None = None,
    base_model: str | None = None,
    license: str | None = None,
    tags: Iterable[str] = (),
    training_settings: Mapping | None = None,
    latent_image: str | None = None,
    samples_per_component: int = 3,
    max_groups: int = 3,
    seed: int = 0,
    template_path: str | os.PathLike = CARD_TEMPLATE,
) -> ModelCard:
    """The model card of `model`: metadata with the evaluation as model-index, usage, samples, configuration.

    `evaluations` are `demvae evaluate` JSON contents (one per evaluation set); `latent_image` is the card-relative
    path of the latent-space picture when it is pushed beside the card. A dialog model's card is
    `dialog_card.render_dialog_card`'s (no latent picture or prior samples: its components are actions).
    """
    if isinstance(model.config, DEMVAEDialogConfig):
        from .dialog_card import render_dialog_card

        return render_dialog_card(model, repo_id=repo_id, evaluations=evaluations, datasets=datasets,
                                  base_model=base_model, license=license, tags=tags,
                                  training_settings=training_settings)
    check_template(template_path)
    config, evaluations = model.config, list(evaluations)
    name = config.paper_name
    model_name = repo_id.split("/")[-1]
    results = [result for evaluation in evaluations for result in eval_results(evaluation)]
    card_data = card_metadata(model_name, results, license=license, datasets=datasets, base_model=base_model,
                              tags=[name_tag(name), "custom_code",
                                    *([] if config.variant == "rnnlm" else ["variational-autoencoder"]), *tags])
    package, remote = usage_snippets(repo_id, config)
    samples = component_samples(model, tokenizer, num_samples=samples_per_component, max_groups=max_groups, seed=seed)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        card_marker=CARD_MARKER,
        model_title=model_name,
        variant_name=name,
        variant_description=(CATEGORICAL_DESCRIPTION if config.has_categorical_latent
                             else VARIANT_DESCRIPTIONS[config.variant]),
        base_model=base_model,
        num_groups=config.num_groups,
        num_components=config.num_components,
        latent_size=config.latent_size,
        categorical_size=config.categorical_size if config.has_categorical_latent else None,
        vocab_size=config.vocab_size,
        num_parameters=f"{model.num_parameters():,}",
        usage_package=package,
        usage_remote=remote,
        evaluations=[evaluation_table(evaluation) for evaluation in evaluations],
        samples=samples if config.has_discrete_latent else None,
        prior_samples=None if config.has_discrete_latent else samples[0]["sentences"],
        shown_groups=min(config.num_groups, max_groups),
        sample_seed=seed,
        latent_image=latent_image,
        config_rows=[(field, getattr(config, field)) for field in DEMVAEConfig.__annotations__],
        training_rows=sorted((key, _format(value)) for key, value in (training_settings or {}).items()),
    )


def recorded_training_settings(folder: Path) -> dict:
    """The training arguments, steps, KL schedule, base model and best validation numbers `demvae train` recorded
    beside the model."""
    summary = training_summary(folder)
    settings = dict(summary.get("training_arguments") or {})
    settings.pop("output_dir", None)  # a folder of the training machine
    settings["steps"] = summary.get("step")
    settings["mixed_precision"] = (summary.get("ran") or {}).get("mixed_precision", settings.get("mixed_precision"))
    for key in ("kl_annealing_step", "kl_weight", "base_model", "base_model_folder"):
        settings[key] = summary.get(key)
    settings.update({f"validation_{key}": value for key, value in (summary.get("validation") or {}).items()})
    return {key: value for key, value in settings.items() if value is not None}


def folder_evaluation(folder: Path) -> dict | None:
    """The evaluation `demvae evaluate` wrote in the folder (EVALUATION_FILE), None without one. One older than the
    weights measured an earlier model, and one that is not an evaluation is none: each is left out with one line
    saying so; one older than config.json (`demvae label-components` since) keeps all but its control numbers."""
    path = folder / EVALUATION_FILE
    if not path.is_file():
        return None
    written = path.stat().st_mtime_ns
    if (folder / "model.safetensors").is_file() and written < (folder / "model.safetensors").stat().st_mtime_ns:
        print(f"{path} is older than the model's weights (trained since), so the card leaves its numbers out; "
              f"`demvae evaluate {folder}` measures them again.")
        return None
    try:
        evaluation = load_evaluation(path)
    except ValueError as error:
        print(f"{path} is left out of the card: {error}")
        return None
    if written < (folder / "config.json").stat().st_mtime_ns and set(CONTROL_KEYS) & set(evaluation):
        print(f"{path} measured the control accuracy before the components were labelled again, so the card leaves "
              f"those numbers out; `demvae evaluate {folder}` measures them again.")
        evaluation = {key: value for key, value in evaluation.items() if key not in CONTROL_KEYS}
    return evaluation if set(evaluation) & set(METRICS) else None


def folder_card_options(folder: Path, options: dict) -> dict:
    """`options` of `push_model` completed from the folder: the training settings and base model `demvae train`
    recorded, the evaluation `demvae evaluate` wrote, the picture `demvae inspect` drew."""
    options = dict(options)
    options.setdefault("training_settings", recorded_training_settings(folder))
    if options.get("base_model") is None:
        options["base_model"] = training_summary(folder).get("base_model")
    if options.get("evaluations") is None:
        evaluation = folder_evaluation(folder)
        options["evaluations"] = [] if evaluation is None else [evaluation]
    if options.get("latent_image") is None and (folder / INSPECTION_IMAGE).is_file():
        options["latent_image"] = folder / INSPECTION_IMAGE
    return options


def write_model_card(folder: str | os.PathLike) -> None:
    """Write the card of the model saved in `folder` as its README.md: the card `demvae push` uploads, rendered by
    the same function from the same folder, with the folder's path as its repository id. A README.md that demvae
    did not write (no CARD_SIGNATURE) is someone's own: left as it is, with one line saying so."""
    folder = Path(folder)
    path = folder / CARD_FILE
    if path.is_file() and CARD_SIGNATURE not in path.read_text(encoding="utf-8", errors="replace"):
        print(f"left {path} as it is: demvae did not write it (delete it or move it away to get the model card "
              "there; `demvae push` uploads the card either way).")
        return
    options = folder_card_options(folder, {})
    image = options.pop("latent_image", None)  # beside the card here, not at the top as in a push
    model, tokenizer = load_model_and_tokenizer(folder)
    card = render_model_card(model, tokenizer, repo_id=folder.as_posix(), **options,
                             latent_image=None if image is None else INSPECTION_IMAGE.as_posix())
    write_text_atomically(path, str(card))
    numbers = f" with the numbers of {EVALUATION_FILE}" if options["evaluations"] else ""
    print(f"wrote the model card {path}{numbers}")


def write_evaluated_card(model: str, output: str | os.PathLike) -> None:
    """After `demvae evaluate`: the card of a model folder written again when the evaluation went into the folder's
    evaluation.json (one written elsewhere reaches a card through `demvae push --eval-json`)."""
    folder = checked_model_folder(model)
    if folder is not None and Path(output).resolve() == (folder / EVALUATION_FILE).resolve():
        write_model_card(folder)


__all__ = [
    "component_samples",
    "eval_results",
    "folder_card_options",
    "folder_evaluation",
    "load_evaluation",
    "recorded_training_settings",
    "render_model_card",
    "usage_snippets",
    "write_evaluated_card",
    "write_model_card",
]
