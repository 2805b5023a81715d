"""The latent space pictured and each mixture component described (see `demvae inspect --help`): what `demvae
inspect` runs once its options are checked."""

import math
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from modeling_demvae import metrics  # noqa: E402

from .evaluation import default_device, label_columns, load_splits, sentences_of  # noqa: E402
from .loading import load_model_and_tokenizer  # noqa: E402
from .model_folder import INSPECTION_FILES  # noqa: E402
from .threads import cpu_threads  # noqa: E402


def project_to_2d(points: torch.Tensor, basis_points: torch.Tensor) -> torch.Tensor:
    """2-D coordinates: the points themselves (d = 2), a PCA fitted on `basis_points` (d > 2), or z with a random
    vertical jitter (d = 1)."""
    dims = points.shape[-1]
    if dims == 2:
        return points
    if dims == 1:
        return torch.cat((points, 0.1 * torch.randn_like(points)), dim=-1)
    center = basis_points.mean(0)
    _, _, vectors = torch.linalg.svd(basis_points - center, full_matrices=False)
    return (points - center) @ vectors[:2].T


def component_samples(prior, group: int, per_component: int) -> torch.Tensor:
    """(K, n, d) draws of group `group` from each of its components."""
    mean, std = prior.means[group], (0.5 * prior.log_variances[group]).exp()
    return mean[:, None] + std[:, None] * torch.randn(mean.shape[0], per_component, mean.shape[1])


def group_summaries(model, posterior) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group I(x; c), component spread and separation, as `demvae evaluate` measures them: three (G,)."""
    distances = metrics.component_distances(model.prior)
    return (metrics.mutual_information(posterior.component_probs), metrics.spread_of(distances),
            metrics.separation_of(distances))


def pictured_groups(config, max_groups: int, group: int | None) -> list[int]:
    """The groups a picture shows: the first `max_groups`, or the one `group`."""
    return list(range(min(config.num_groups, max_groups))) if group is None else [group]


def draw_categorical_components(model, posterior, path: Path, *, max_groups: int, group: int | None = None,
                                marked: int | None = None, **_) -> None:
    """Per group, p(z_j = v | c = k) as a heat map, one row per component (the d variables' V values side by side),
    and the data's mean q(z|x) as the last row; `group` alone when given, its component `marked` framed in red."""
    config, prior = model.config, model.prior
    groups, (d, values, k) = pictured_groups(config, max_groups, group), (config.latent_size, config.categorical_size,
                                                                          config.num_components)
    mi, spread, separation = group_summaries(model, posterior)
    component_probs = prior.log_probabilities(prior.logits).detach().exp()  # (G, K, d, V)
    data_probs = posterior.latent_logits.softmax(-1).mean(0)  # (G, d, V)
    figure, axes = plt.subplots(len(groups), 1, figsize=(max(8.0, 0.12 * d * values + 4),
                                                         (0.3 * (k + 1) + 1.4) * len(groups)),
                                squeeze=False, layout="constrained")
    for group, axis in zip(groups, axes.flat):
        image = axis.imshow(torch.cat((component_probs[group], data_probs[group, None])).flatten(1), aspect="auto",
                            cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        for j in range(1, d):
            axis.axvline(j * values - 0.5, color="white", linewidth=0.8)
        axis.set_yticks(range(k + 1), [f"component {c}" for c in range(k)] + ["data: mean q(z|x)"], fontsize=7)
        if marked is not None:
            axis.add_patch(plt.Rectangle((-0.5, marked - 0.5), d * values, 1, fill=False, edgecolor="red",
                                         linewidth=2.5))
            axis.get_yticklabels()[marked].set(color="red", fontweight="bold")
        axis.set_xticks([j * values + (values - 1) / 2 for j in range(d)], [f"z{j}" for j in range(d)], fontsize=6)
        axis.set_title(f"group {group}: I(x;c)={mi[group]:.2f} nats, exp(I)={mi[group].exp():.2f},\n"
                       f"spread={spread[group]:.2f}, separation={separation[group]:.2f} (Jensen-Shannon bits per "
                       "variable)", fontsize=8)
    axes.flat[-1].set_xlabel(f"latent variable z_j, its values v = 0 .. {values - 1} from left to right", fontsize=8)
    figure.colorbar(image, ax=axes.ravel().tolist(), label="probability of the value")
    figure.suptitle(f"{config.paper_name}: p(z_j = v | component) of {d} variables x {values} values", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def crowd_alpha(count: int, legible_alone: int) -> float:
    """Opacity for `count` overlapping marks: opaque while they are few, fainter as they crowd, so that a dense
    cluster reads as darker rather than as one solid smudge."""
    return min(1.0, max(0.2, legible_alone / max(count, 1)))


def latent_legend_handles(num_components: int, per_component: int, num_sentences: int, colors) -> list:
    """One legend entry per kind of mark (in black: a mark's colour is its component) and one per component."""
    def mark(label, marker, size, **style):
        return plt.Line2D([], [], linestyle="none", marker=marker, markersize=size, label=label, **style)

    kinds = [mark(f"prior samples z ~ p(z|c)\n({per_component} per component)", "o", 3, color="black"),
             mark(f"real sentences: mean of q(z|x)\n({num_sentences}), coloured by their\nmost probable component",
                  "x", 6, color="black", markeredgewidth=1.2),
             mark("component mean\n(its number inside)", "o", 11, markerfacecolor="white", markeredgecolor="black")]
    return kinds + [mark(f"component {k}", "s", 8, color=colors(k % colors.N)) for k in range(num_components)]


def draw_latent_space(model, posterior, path: Path, *, max_groups: int, per_component: int, group: int | None = None,
                      marked: int | None = None) -> None:
    """Per group, prior samples, real sentences and component means in 2-D; `group` alone when given, its component
    `marked` ringed in red."""
    config, prior = model.config, model.prior
    groups = pictured_groups(config, max_groups, group)
    columns = min(len(groups), 3)
    rows = math.ceil(len(groups) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns + 2.4, 4.2 * rows + 0.5), squeeze=False,
                                layout="constrained")
    colors = plt.get_cmap("tab10" if config.num_components <= 10 else "tab20")
    probs = posterior.component_probs
    mi, spread, separation = group_summaries(model, posterior)
    posterior_means = posterior.mean.view(-1, config.num_groups, config.latent_size)
    sample_alpha = crowd_alpha(config.num_components * per_component, legible_alone=250)
    sentence_alpha = crowd_alpha(len(probs), legible_alone=700)
    with torch.no_grad():
        for index, axis in enumerate(axes.flat):
            if index >= len(groups):
                axis.axis("off")
                continue
            group = groups[index]
            samples = component_samples(prior, group, per_component)
            flat = project_to_2d(samples.flatten(0, 1), samples.flatten(0, 1)).view(*samples.shape[:2], 2)
            real = project_to_2d(posterior_means[:, group], samples.flatten(0, 1))
            centers = project_to_2d(prior.means[group], samples.flatten(0, 1))
            assigned = probs[:, group].argmax(-1)
            for k in range(config.num_components):
                color = colors(k % colors.N)
                axis.scatter(*flat[k].T, s=6, alpha=sample_alpha, color=color, linewidths=0, zorder=1)
                axis.scatter(*real[assigned == k].T, s=16, marker="x", alpha=sentence_alpha, color=color,
                             linewidths=0.9, zorder=2)
            for k in range(config.num_components):  # above every component's dots and crosses
                axis.scatter(*centers[k], s=170, color=colors(k % colors.N), edgecolors="black", linewidths=1.2,
                             zorder=3)
                axis.annotate(str(k), centers[k].tolist(), ha="center", va="center", fontsize=7, fontweight="bold",
                              color="white", zorder=4)
            if marked is not None:
                axis.scatter(*centers[marked], s=700, facecolors="none", edgecolors="red", linewidths=2.5, zorder=5)
            axis.set_title(f"group {group}: I(x;c)={mi[group]:.2f} nats, exp(I)={mi[group].exp():.2f},\n"
                           f"spread={spread[group]:.2f}, nearest-neighbour separation={separation[group]:.2f}",
                           fontsize=9)
            axis.set_xlabel("z1" if config.latent_size <= 2 else "PC1")
            axis.set_ylabel({1: "random jitter (no meaning)", 2: "z2"}.get(config.latent_size, "PC2"))
    figure.legend(handles=latent_legend_handles(config.num_components, per_component, len(probs), colors),
                  loc="outside right center", ncols=1 if config.num_components <= 12 else 2, fontsize=8,
                  frameon=False, labelspacing=0.8)
    projection = {1: "d = 1, spread vertically at random", 2: "d = 2"}.get(
        config.latent_size, f"d = {config.latent_size}, two principal components")
    figure.suptitle(f"{config.paper_name} latent space, per mixture group ({projection})", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def characteristic_words(sentences, weights: torch.Tensor, tokenizer, config, top: int) -> list[str]:
    """Words with the largest p_k(w) log(p_k(w) / p(w)), p_k from counts weighted by q(c = k|x)."""
    special = {config.bos_token_id, config.eos_token_id, config.pad_token_id}
    overall, weighted = Counter(), Counter()
    for sentence, weight in zip(sentences, weights.tolist()):
        for token in sentence:
            if token not in special:
                overall[token] += 1
                weighted[token] += weight
    total, weighted_total = sum(overall.values()), sum(weighted.values())
    if not weighted_total:
        return []
    scores = {w: (weighted[w] / weighted_total) * math.log((weighted[w] / weighted_total) / (overall[w] / total))
              for w in overall if weighted[w] > 0}
    best = sorted(scores, key=lambda w: -scores[w])[:top]
    return tokenizer.convert_ids_to_tokens(best)


def first_distinct(texts, count: int) -> list[str]:
    """The first `count` different texts, in order: a test set repeats short sentences (Penn Treebank's "source
    telerate systems inc"), and one sentence listed twice says less than two."""
    chosen = []
    for text in texts:
        if text not in chosen:
            chosen.append(text)
            if len(chosen) == count:
                break
    return chosen


def with_counts(texts: list[str]) -> list[str]:
    """Each different text once, in order of first appearance, with " (xN)" when it came N > 1 times: greedy
    samples of a component often repeat."""
    return [text if n == 1 else f"{text} (x{n})" for text, n in Counter(texts).items()]


def codes_with(config, group: int, k: int, num_samples: int) -> torch.Tensor:
    """(num_samples, G) component indices: k in `group`, the other groups' drawn uniformly (the prior's p(c))."""
    codes = torch.randint(config.num_components, (num_samples, config.num_groups))
    codes[:, group] = k
    return codes


def fact_lines(facts: dict) -> list[str]:
    """A component's share and characteristic words (`component_facts`) as Markdown list items."""
    return [f"- share of the data: {facts['share']:.1%} (most probable component for "
            f"{facts['most_probable_share']:.1%} of the sentences)",
            f"- characteristic words: {', '.join(facts['words']) if facts['words'] else '(none)'}"]


def agreement_lines(agreement: dict[str, dict[str, float]], num_sentences: int) -> list[str]:
    """The report's section on the corpus's labels: a homogeneity means something only beside its chance level."""
    if not agreement:
        return []
    lines = ["## Agreement with the labels", "",
             f"The {num_sentences} sentences' argmax codes (one component per group) as clusters, scored as `demvae "
             "evaluate` does: homogeneity (each cluster holds one label), its chance level (the mean homogeneity of "
             "the same clusters over 20 shuffles of the labels: small clusters look pure by chance) and the "
             "homogeneity above it.", "",
             "| label | homogeneity | chance (labels shuffled) | above chance | completeness | NMI |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {label} | {s['homogeneity']:.3f} | {s['homogeneity_chance']:.3f} | {s['homogeneity_adjusted']:.3f} "
              f"| {s['completeness']:.3f} | {s['nmi']:.3f} |" for label, s in agreement.items()]
    return lines + [""]


def mode_densities(model, posterior) -> torch.Tensor:
    """log p(posterior mode | c = k) of every sentence, (N, G, K): the density that ranks the closest sentences."""
    with torch.no_grad():
        return model.prior.component_log_density(model.posterior_latent(posterior, sample=False))


def component_facts(tokenizer, config, sentences, posterior, mode_density, group: int, k: int, *, examples: int,
                    top_words: int) -> dict:
    """What the report and the demo say of component k of a group: its share of the data (mean q(c|x), and how
    often it is the most probable one), its characteristic words and the distinct real sentences closest to it."""
    probs = posterior.component_probs
    ranked = mode_density[:, group, k].argsort(descending=True).tolist()
    return {"share": float(probs[:, group, k].mean()),
            "most_probable_share": float((probs[:, group].argmax(-1) == k).float().mean()),
            "words": characteristic_words(sentences, probs[:, group, k], tokenizer, config, top_words),
            "closest": first_distinct((tokenizer.decode(sentences[i], skip_special_tokens=True) for i in ranked),
                                      examples)}


def write_report(model, tokenizer, sentences, posterior, path: Path, *, max_groups: int, examples: int,
                 top_words: int, agreement: dict[str, dict[str, float]] | None = None) -> None:
    """The report on the components, after `agreement` (label -> `metrics.label_agreement`'s scores) when the
    sentences carry labels."""
    config = model.config
    mi, spread, separation = group_summaries(model, posterior)
    mode_density = mode_densities(model, posterior)
    values = f", V = {config.categorical_size}" if config.has_categorical_latent else ""
    lines = [f"# Components of {config.paper_name} model ({config.num_groups} group(s) x {config.num_components} "
             f"components, d = {config.latent_size}{values})", "",
             f"Placed {len(sentences)} real sentences. Share = mean q(c|x); it says nothing about usage on its own: "
             "a collapsed group (I(x; c) near 0, exp(I) near 1) gives every sentence the same q(c|x).", "",
             *agreement_lines(agreement or {}, len(sentences))]
    for group in range(min(config.num_groups, max_groups)):
        lines += [f"## Group {group}: I(x; c) = {mi[group]:.3f} nats, exp(I) = {mi[group].exp():.2f} of "
                  f"{config.num_components}, spread = {spread[group]:.2f}, separation = {separation[group]:.2f}", ""]
        for k in range(config.num_components):
            generated = model.generate(component=codes_with(config, group, k, examples), num_samples=examples)
            facts = component_facts(tokenizer, config, sentences, posterior, mode_density, group, k,
                                    examples=examples, top_words=top_words)
            lines += [f"### Component {k}", "", *fact_lines(facts), "- sampled:"]
            lines += [f"  - {text}" for text in with_counts([tokenizer.decode(row, skip_special_tokens=True)
                                                             or "(empty)" for row in generated])]
            lines += ["- closest real sentences (distinct):"]
            lines += [f"  - {text}" for text in facts["closest"]]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def inspect_command(args, output: Path) -> int:
    """`demvae inspect`, its options checked: the picture and the report of the model's components into `output`."""
    splits = load_splits(args)
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device or default_device())
        if not model.config.has_mixture_prior:
            raise ValueError(f"inspect pictures mixture components; this model has variant={model.config.variant!r} "
                             "(needs 'dem').")
        sentences, split = sentences_of(splits["test"], tokenizer, model.config.max_sentence_length,
                                        args.max_sentences)
        output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        model.cpu()
        posterior = metrics.encode_sentences(model, sentences)
        posterior = type(posterior)(**{k: v.detach() for k, v in posterior.items()})
        draw = draw_categorical_components if model.config.has_categorical_latent else draw_latent_space
        draw(model, posterior, output / INSPECTION_FILES[0], max_groups=args.max_groups,
             per_component=args.samples_per_component)
        labels = {column: split[column] for column in label_columns(split.column_names, None)}
        agreement = metrics.label_agreement(posterior.component_probs, labels, seed=args.seed)
        write_report(model, tokenizer, sentences, posterior, output / INSPECTION_FILES[1], max_groups=args.max_groups,
                     examples=args.examples, top_words=args.top_words, agreement=agreement)
    print(f"wrote {output / INSPECTION_FILES[0]} and {output / INSPECTION_FILES[1]}")
    return 0
