"""What the demo's tabs compute, without the web page: sentences from a component or a label, the component's facts
and picture (the inspection's own), a sentence read by the model, and sentences between two others. Plain Python
values in and out, so that each tab is one small Gradio wiring (`demo_app.py`)."""

import tempfile
from functools import cache
from pathlib import Path

import torch

from modeling_demvae.data import sentence_ids
from modeling_demvae.dialog_data import turn_ids

from .demo_placement import Placement
from .inspection import (
    component_facts,
    draw_categorical_components,
    draw_latent_space,
    fact_lines,
    mode_densities,
)

PRIOR_SAMPLES = 200  # per component, in the picture, as `demvae inspect` draws them


def component_labels(config, group: int) -> dict[int, str]:
    """Component k of `group` -> "name=label" for the attributes tied to that group's component (`variable` None)."""
    labels = {}
    for name, spec in config.attributes.items():
        if spec["group"] == group and spec["variable"] is None:
            for label, values in spec["values"].items():
                for k in values:
                    labels[k] = ", ".join(filter(None, (labels.get(k), f"{name}={label}")))
    return labels


class ComponentExplorer:
    """A model in eval mode, its tokenizer and the real sentences placed in its latent space (`Placement`)."""

    def __init__(self, model, tokenizer, placement: Placement, *, picture_dir: Path | None = None,
                 speaker: str | None = None):
        if not model.config.has_mixture_prior:
            raise ValueError(f"the demo explores mixture components; this model has variant={model.config.variant!r} "
                             "(needs 'dem').")
        self.model, self.tokenizer, self.placement = model.eval(), tokenizer, placement
        self.speaker = speaker  # a dialog model's response VAE reads `<s> <speaker> words </s>`
        self.config = model.config
        self.mode_density = mode_densities(model, placement.posterior)
        self.picture_dir = Path(picture_dir or tempfile.mkdtemp(prefix="demvae-demo-"))
        self.picture = cache(self._picture)  # one drawing per (group, component)

    # ----- choices -----

    def component_names(self, group: int) -> list[str]:
        """"k" or "k (act=question)" for each component of `group`."""
        labels = component_labels(self.config, group)
        return [f"{k} ({labels[k]})" if k in labels else str(k) for k in range(self.config.num_components)]

    def label_names(self) -> list[str]:
        """"name=label" for every label that can be generated (one that a latent value carries)."""
        return [f"{name}={label}" for name, spec in self.config.attributes.items()
                for label in spec["labels"] if spec["values"][label]]

    def checked_choice(self, group: int, component: int) -> None:
        config = self.config
        for what, value, size in (("group", group, config.num_groups), ("component", component, config.num_components)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
                raise ValueError(f"{what} must be an integer in [0, {size}), got {value!r}.")

    # ----- the Components tab -----

    def generate(self, *, group: int = 0, component: int = 0, label: str | None = None, num_sentences: int = 10,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
        """Sentences from component `component` of `group` (the other groups' components drawn from the prior), or
        from `label` ("name=label": its latent fixed, the rest from the prior); greedy, or sampled."""
        if not isinstance(num_sentences, int) or not 1 <= num_sentences <= 100:
            raise ValueError(f"num_sentences must be an integer in [1, 100], got {num_sentences!r}.")
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {}
        if label:
            name, _, value = label.partition("=")
            ids = self.model.generate(attributes={name: value}, num_samples=num_sentences, **sampling)
        else:
            self.checked_choice(group, component)
            codes = torch.randint(self.config.num_components, (num_sentences, self.config.num_groups))
            codes[:, group] = component
            ids = self.model.generate(component=codes, num_samples=num_sentences, **sampling)
        return [text or "(empty)" for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def facts(self, group: int, component: int, *, examples: int = 5, top_words: int = 10) -> dict:
        """The component's share, characteristic words and closest real sentences (`inspection.component_facts`)."""
        self.checked_choice(group, component)
        placement = self.placement
        return component_facts(self.tokenizer, self.config, placement.sentences, placement.posterior,
                               self.mode_density, group, component, examples=examples, top_words=top_words)

    def facts_markdown(self, group: int, component: int) -> str:
        facts = self.facts(group, component)
        closest = [f"  - {text}" for text in facts["closest"]]
        return "\n".join([f"**Group {group}, component {self.component_names(group)[component]}** "
                          f"({len(self.placement.sentences)} real sentences placed)", "", *fact_lines(facts),
                          "- closest real sentences:", *closest])

    def label_component(self, label: str) -> tuple[int, int | None]:
        """The group a label ("name=label") is tied to, and its first component when it is tied to c_g."""
        name, _, value = label.partition("=")
        if name not in self.config.attributes or value not in self.config.attributes[name]["labels"]:
            raise ValueError(f"unknown label {label!r}; this model's labels are {self.label_names()}.")
        spec = self.config.attributes[name]
        values = spec["values"][value]
        return spec["group"], values[0] if spec["variable"] is None and values else None

    def _picture(self, group: int, component: int | None) -> str:
        """The inspection's picture of one group, `component` marked (None: none), as a PNG path."""
        path = self.picture_dir / f"group{group}-component{component}.png"
        draw = draw_categorical_components if self.config.has_categorical_latent else draw_latent_space
        torch.manual_seed(0)
        draw(self.model, self.placement.posterior, path, max_groups=1, group=group, marked=component,
             per_component=PRIOR_SAMPLES)
        return str(path)

    # ----- the Read a sentence tab -----

    def encode_text(self, text: str):
        """The posterior of one sentence, read as training reads it (`<s> words </s>`, or with `speaker`
        `<s> <speaker> words </s>`)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("type a sentence to read (it is empty).")
        length = self.config.max_sentence_length
        ids = (turn_ids(self.tokenizer, [self.speaker], [text.strip()], max_length=length) if self.speaker
               else sentence_ids(self.tokenizer, [text.strip()], max_length=length))
        ids = torch.tensor(ids, device=self.model.device)
        with torch.no_grad():
            return self.model.encode(ids)

    def read(self, text: str, *, num_sentences: int = 5, seed: int = 0) -> dict:
        """q(c|x) per group (G lists of K floats), the most probable component per group with its label, the
        reconstruction (decoded from the posterior mode) and sentences from the same components with a new z."""
        posterior = self.encode_text(text)
        probs = posterior.component_probs[0]
        best = probs.argmax(-1).tolist()
        with torch.no_grad():
            mode = self.model.posterior_latent(posterior, sample=False)
            reconstruction = self.tokenizer.decode(self.model.generate(latent=mode)[0], skip_special_tokens=True)
        torch.manual_seed(seed)
        resampled = self.model.generate(component=best, num_samples=num_sentences)
        return {"probs": probs.tolist(),
                "best": [self.component_names(group)[k] for group, k in enumerate(best)],
                "reconstruction": reconstruction,
                "resampled": self.tokenizer.batch_decode(resampled, skip_special_tokens=True)}

    # ----- the Between two sentences tab -----

    def posterior_mean(self, text: str) -> torch.Tensor:
        """The decoder latent at the mean of q(z|x): z's mean, or for the categorical family its probabilities."""
        posterior = self.encode_text(text)
        if self.config.has_categorical_latent:
            return posterior.latent_logits.softmax(-1).flatten(1)
        return posterior.mean

    def between(self, first: str, second: str, *, steps: int = 5) -> list[tuple[float, str]]:
        """(t, sentence) decoded greedily from (1 - t) m1 + t m2 at `steps` evenly spaced t in [0, 1]."""
        if not isinstance(steps, int) or not 2 <= steps <= 20:
            raise ValueError(f"steps must be an integer in [2, 20], got {steps!r}.")
        start, end = self.posterior_mean(first), self.posterior_mean(second)
        weights = torch.linspace(0, 1, steps, device=start.device).unsqueeze(1)
        with torch.no_grad():
            ids = self.model.generate(latent=(1 - weights) * start + weights * end)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [(round(float(t), 3), text) for t, text in zip(weights.flatten(), texts)]


__all__ = ["ComponentExplorer", "component_labels"]
