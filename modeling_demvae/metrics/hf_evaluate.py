"""The metrics that fit the `evaluate` library's interface, as a local evaluation module (nothing downloaded).

    import evaluate
    from modeling_demvae.metrics import hf_evaluate
    bleu = evaluate.load(hf_evaluate.__file__, config_name="bleu")
    bleu.compute(predictions=["the cat sat"], references=["the cat sat down"])      # {"bleu": ..., "sacrebleu": ...}
    evaluate.load(hf_evaluate.__file__, config_name="homogeneity").compute(predictions=clusters, references=labels)
    evaluate.load(hf_evaluate.__file__, config_name="wkl").compute(predictions=generated, training_corpus=train)

Configurations: "bleu" (hypothesis and reference sentences, whitespace-tokenized; NLTK smoothing 1 and sacrebleu,
0-100), "homogeneity" (cluster ids against integer labels: homogeneity, completeness, NMI), "wkl" (generated
sentences, and the training sentences as `training_corpus`: the two corpora differ in size, so the training side
is a keyword argument; add-one smoothing, see `unigram.py`). Needs `pip install evaluate`; importing this file
without it fails, so the package never imports it by itself.
"""

import datasets
import evaluate

from modeling_demvae.metrics.bleu import bleu_scores
from modeling_demvae.metrics.clustering import cluster_scores
from modeling_demvae.metrics.unigram import unigram_kl

CONFIGURATIONS = {
    "bleu": {"predictions": datasets.Value("string"), "references": datasets.Value("string")},
    "homogeneity": {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")},
    "wkl": {"predictions": datasets.Value("string")},
}


class DEMVAEMetrics(evaluate.Metric):
    """DEM-VAE evaluation metrics (Shi et al., ICML 2020): reconstruction BLEU, label homogeneity and wKL."""

    def _info(self):
        if self.config_name not in CONFIGURATIONS:
            raise ValueError(f"config_name must be one of {sorted(CONFIGURATIONS)}, got {self.config_name!r}.")
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Shi, Zhou, Miao, Li. Dispersed Exponential Family Mixture VAEs for Interpretable Text "
            "Generation. ICML 2020.",
            inputs_description=f"see the module docstring; configuration {self.config_name!r}",
            features=datasets.Features(CONFIGURATIONS[self.config_name]),
        )

    def _compute(self, predictions=None, references=None, training_corpus=None, smoothing: float = 1.0):
        if self.config_name == "bleu":
            return bleu_scores([r.split() for r in references], [p.split() for p in predictions])
        if self.config_name == "homogeneity":
            return cluster_scores(predictions, references)
        if training_corpus is None:
            raise ValueError("wkl needs the training sentences: compute(predictions=..., training_corpus=[...]).")
        return {"wkl": unigram_kl([p.split() for p in predictions], [t.split() for t in training_corpus],
                                  smoothing=smoothing)}
