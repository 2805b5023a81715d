"""Attributes: label columns (a dialog act, an emotion, ...) tied to discrete latents of the model.

`config.attributes` ties each attribute to one discrete latent: group g's mixture component c_g (`variable` None) or,
in the categorical family, the j-th categorical variable z_{g,j} of group g, laid out (G, d, V) in the decoder latent.
A supervised attribute adds a cross-entropy term pulling q(latent|x) toward the label (the reference BMVAE's
`suploss_for_z`); generating by label fixes the latent to a value of the label and draws the rest from the prior.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def attribute_logits(posterior, spec: dict) -> torch.Tensor:
    """The logits of q(latent|x) that an attribute is tied to: (B, K) for c_g, (B, V) for z_{g,j}."""
    if spec["variable"] is None:
        return posterior.component_logits[:, spec["group"]]
    return posterior.latent_logits[:, spec["group"], spec["variable"]]


def attribute_loss(config, posterior, attribute_labels: torch.Tensor) -> torch.Tensor:
    """-log q(label|x) summed over the supervised attributes and the labelled entries, divided by the batch size.

    `attribute_labels` (B, num_attributes) holds label ids in `config.attributes` order, -100 where unlabelled. As in
    the reference code, the sum is divided by the number of sentences, not of labels: each sentence contributes its
    own term (0 when unlabelled), so the term is a per-sentence batch mean like the others, and the mean over equal
    slices of a batch (processes, accumulation steps) is the whole batch's, however the labels fall.
    """
    names = list(config.attributes)
    if attribute_labels.dim() != 2 or attribute_labels.shape[1] != len(names):
        raise ValueError(f"attribute_labels must have shape (batch, {len(names)}), one column per attribute "
                         f"{names}, got {tuple(attribute_labels.shape)}.")
    total = torch.zeros((), device=attribute_labels.device)
    with torch.autocast(attribute_labels.device.type, enabled=False):
        for column, (name, spec) in enumerate(config.attributes.items()):
            labels = attribute_labels[:, column]
            labelled = labels != IGNORE_INDEX
            if not spec["supervised"]:
                if labelled.any():
                    raise ValueError(f"attribute {name!r} is not supervised (its components were labelled after "
                                     "training); give -100 in its column of attribute_labels.")
                continue
            if labelled.any() and not 0 <= int(labels[labelled].min()) <= int(labels[labelled].max()) < len(
                    spec["labels"]):
                raise ValueError(f"attribute_labels[:, {column}] ({name!r}) must hold label ids in "
                                 f"[0, {len(spec['labels'])}) or -100, got {sorted(set(labels.tolist()))}.")
            logits = attribute_logits(posterior, spec).float()
            total = total + F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / attribute_labels.shape[0]


def allowed_values(config, attributes: dict) -> dict[tuple[int, int | None], list[int]]:
    """(group, variable) -> the latent values the requested labels allow (the intersection where two attributes
    share a latent); an unknown attribute or label is a one-line error listing the valid ones."""
    if not isinstance(attributes, dict) or not attributes:
        raise ValueError(f"attributes must be a non-empty dict of attribute name -> label, got {attributes!r}.")
    if not config.attributes:
        raise ValueError("this model has no attributes (config.attributes is empty): train it with labels (`demvae "
                         "train --supervise COLUMN`) or label its components (`demvae label-components`), or use "
                         "component=.")
    allowed = {}
    for name, label in attributes.items():
        if name not in config.attributes:
            raise ValueError(f"unknown attribute {name!r}; this model has {list(config.attributes)}.")
        spec = config.attributes[name]
        if label not in spec["labels"]:
            raise ValueError(f"unknown label {label!r} of attribute {name!r}; its labels are {spec['labels']}.")
        key = (spec["group"], spec["variable"])
        values = [v for v in allowed.get(key, spec["values"][label]) if v in spec["values"][label]]
        if not values:
            where = f"group {key[0]}" + ("" if key[1] is None else f", variable {key[1]}")
            if key in allowed:
                raise ValueError(f"no latent value of {where} carries {label!r} of {name!r} together with the other "
                                 f"attributes asked for: {attributes}.")
            carried = [other for other in spec["labels"] if spec["values"][other]]
            raise ValueError(f"{name}={label!r} cannot be generated: it is the majority label of no component of "
                             f"{where}; the labels of {name!r} that can be generated are {carried}.")
        allowed[key] = values
    return allowed


def attribute_latents(config, attributes: dict, num_samples: int, *, generator=None, variable_log_probs=None):
    """Component indices (num_samples, G) and {(group, variable): values (num_samples,)} for the categorical variables
    the attributes fix. A group whose c_g an attribute fixes takes the label's component (uniform among several);
    a group whose variables an attribute fixes draws c_g from p(c_g | those variables), proportional to
    prod_j p(z_{g,j} = v_j | c_g) (`variable_log_probs`, the prior's log p(z_{g,j} = v | c_g = k) laid out
    (G, K, d, V)), so that the rest of z comes from the prior given the label; the other groups draw c_g from p(c)."""
    device = generator.device if generator is not None else torch.device("cpu")
    components = torch.randint(config.num_components, (num_samples, config.num_groups), generator=generator,
                               device=device)
    fixed_variables, fixed_groups = {}, set()
    for (group, variable), values in allowed_values(config, attributes).items():
        choice = torch.randint(len(values), (num_samples,), generator=generator, device=device)
        drawn = torch.tensor(values, device=device)[choice]
        if variable is None:
            components[:, group] = drawn
            fixed_groups.add(group)
        else:
            fixed_variables[group, variable] = drawn
    if variable_log_probs is not None:
        log_probs = variable_log_probs.detach().to(device, torch.float32)
        log_posterior = {}  # group -> (num_samples, K): sum_j log p(z_{g,j} = v_j | c_g)
        for (group, variable), values in fixed_variables.items():
            terms = log_probs[group, :, variable, values].T
            log_posterior[group] = log_posterior.get(group, 0) + terms
        for group, logits in log_posterior.items():
            if group not in fixed_groups:
                components[:, group] = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
    return components, fixed_variables


def with_fixed_variables(config, latent: torch.Tensor, fixed_variables: dict) -> torch.Tensor:
    """The categorical family's decoder latents (n, G*d*V) with the given variables z_{g,j} set to one-hot values."""
    if not fixed_variables:
        return latent
    grouped = latent.view(latent.shape[0], config.num_groups, config.latent_size, config.categorical_size)
    for (group, variable), values in fixed_variables.items():
        grouped[:, group, variable] = F.one_hot(values.to(latent.device), config.categorical_size).to(latent.dtype)
    return latent


__all__ = ["allowed_values", "attribute_latents", "attribute_logits", "attribute_loss", "with_fixed_variables"]
