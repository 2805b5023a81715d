"""What label homogeneity random clusters reach on DailyDialog's test utterances: the floor under the tables' scores.

Homogeneity (each cluster holds one label) rises by chance when clusters are small: with G = 3 groups of K = 5
components a model's argmax codes make up to 125 clusters, and on 1,000 utterances (the `cpu` budget) that is
8 per cluster, so even clusters drawn at random look partly pure. This script draws each utterance's cluster
uniformly from the 125 codes, many times, and scores it against the act and emotion labels of the first N test
utterances, for the two test sizes of the budgets: a model's homogeneity means something only above this.

    python benchmarks/homogeneity_chance.py        # prints a table, writes JSON
"""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from demvae.precision import cpu_model_name

from modeling_demvae.data import load_corpus
from modeling_demvae.metrics.clustering import cluster_scores

LABELS = ("act", "emotion")


def chance_scores(labels: list, *, clusters: int, draws: int, seed: int) -> dict[str, float]:
    """Mean and standard deviation of the homogeneity of `draws` uniform random clusterings of `labels`."""
    generator = np.random.default_rng(seed)
    scores = [cluster_scores(generator.integers(0, clusters, len(labels)), labels)["homogeneity"]
              for _ in range(draws)]
    return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding daily_dialog/ (default: $DEMVAE_DATA_DIR or ../shared/data)")
    parser.add_argument("--clusters", type=int, default=5 ** 3, help="number of codes, K^G (default: 125)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 0],
                        help="the first N test utterances, 0 for all (default: 1000 0, the cpu and full budgets)")
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--json", default="benchmarks/results/homogeneity_chance_dailydialog.json")
    args = parser.parse_args()

    test = load_corpus("daily_dialog", data_dir=args.data_dir)["test"]
    rows = []
    for size in args.sizes:
        size = size or len(test)
        row = {"utterances": size, "clusters": args.clusters}
        for index, name in enumerate(LABELS):
            row[name] = chance_scores(test[name][:size], clusters=args.clusters, draws=args.draws, seed=index)
        rows.append(row)

    print(f"Homogeneity of {args.clusters} uniform random clusters, {args.draws} draws (mean ± sd), "
          f"DailyDialog test; {cpu_model_name()}")
    print("| utterances | " + " | ".join(f"{name} homogeneity" for name in LABELS) + " |")
    print("| ---: | " + " | ".join("---:" for _ in LABELS) + " |")
    for row in rows:
        cells = " | ".join(f"{row[name]['mean']:.3f} ± {row[name]['std']:.3f}" for name in LABELS)
        print(f"| {row['utterances']:,} | {cells} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": cpu_model_name(), "draws": args.draws, "rows": rows}, indent=2)
                               + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
