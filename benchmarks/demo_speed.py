"""How long the demo's Components tab takes for a reference-size model: ten sentences from one component, greedy and
sampled (top-p 0.9), through `ComponentExplorer.generate` (what the Generate button calls), and the component's facts
and picture (drawn once per component, then kept).

The model has DEMVAEConfig's defaults, the reference size (a 10,000-word vocabulary, 512-unit GRUs, 20 groups x 5
components x 2-d), randomly initialised: decoding time does not depend on the weights, and untrained weights rarely
stop before the longest sentence (39 new tokens), the slowest case. The placed sentences are 200 random ones.

  python benchmarks/demo_speed.py --threads 2
      # prints a table, writes benchmarks/results/demo_speed_cpu_<cpu>_2thread.json
"""

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import torch
from demvae.demo_explorer import ComponentExplorer
from demvae.demo_placement import Placement
from demvae.precision import cpu_model_name

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer, metrics


def seconds(function, repeats: int) -> float:
    """The median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=10, help="sentences per Generate (10)")
    parser.add_argument("--json", type=Path,
                        help="default: benchmarks/results/demo_speed_cpu_<cpu>_<threads>thread.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = DEMVAEConfig()
    tokenizer = build_tokenizer([" ".join(f"w{i}" for i in range(config.vocab_size - 4))])
    model = DEMVAEForGeneration(DEMVAEConfig(vocab_size=len(tokenizer))).eval()
    sentences = [[tokenizer.bos_token_id, *torch.randint(4, len(tokenizer), (length,)).tolist(),
                  tokenizer.eos_token_id] for length in torch.randint(5, 30, (200,)).tolist()]
    with torch.no_grad():
        posterior = metrics.encode_sentences(model, sentences)
    explorer = ComponentExplorer(model, tokenizer, Placement(sentences, posterior))

    n = args.sentences
    rows = [
        (f"{n} sentences, greedy", seconds(lambda: explorer.generate(group=3, component=2, num_sentences=n),
                                           args.repeats)),
        (f"{n} sentences, sampled (top-p 0.9)",
         seconds(lambda: explorer.generate(group=3, component=2, num_sentences=n, do_sample=True, top_p=0.9),
                 args.repeats)),
        ("facts of the component (share, words, closest)", seconds(lambda: explorer.facts_markdown(3, 2),
                                                                   args.repeats)),
        ("its picture, first drawing (then kept)", seconds(lambda: explorer.picture(3, 2), 1)),
    ]
    cpu, load = cpu_model_name(), os.getloadavg()[0]  # the machines here are shared: the load says how busy
    print(f"CPU: {cpu}, {args.threads} threads, load average {load:.1f} on {os.cpu_count()} cores; reference-size "
          f"model (untrained), median of {args.repeats}\n")
    print(f"| {'what':<50} | seconds |\n| {'-' * 50} | ------: |")
    for what, value in rows:
        print(f"| {what:<50} | {value:7.3f} |")
    output = args.json or Path(__file__).parent / "results" / (
        "demo_speed_cpu_" + re.sub(r"[^a-z0-9]+", "_", cpu.lower()).strip("_") + f"_{args.threads}thread.json")
    output.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "threads": args.threads, "load_average": load,
                                  "repeats": args.repeats, "model": "DEMVAEConfig defaults, untrained",
                                  "rows": [{"what": what, "seconds": value} for what, value in rows]}, indent=2)
                      + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
