"""Batched importance-weighted NLL vs a one-sentence-at-a-time loop of the same model, in the same run.

The loop is the reference code's way: one sentence per call, its samples in chunks of 100 (5 calls for 500
samples). A third row, fully unbatched (one sentence and one sample per call), shows what batching over samples
alone is worth; it runs on a few sentences only. The batched way puts many (sentence, sample) rows through the
decoder per call, sentences sorted by length. All go through `sentence_log_likelihoods`, so only the batching
differs. A reference-size model (DEMVAEConfig defaults: 10k vocabulary, 512-unit GRUs, 20 x 5 x 2-d latent) is
randomly initialised: timing does not depend on the weights. The loops are slow, so they run on the first
--loop-sentences (--unbatched-sentences) sentences of the sample and their time per token is extrapolated to
the whole test set; the batched run covers --sentences (0: all).

  python benchmarks/nll_speed.py                    # PTB test set, 500 samples; prints a table, writes JSON
  python benchmarks/nll_speed.py --device cuda --sentences 0
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer
from modeling_demvae.data import default_data_dir, sentence_ids
from modeling_demvae.metrics import sentence_log_likelihoods

DATA_DIR = default_data_dir()


def ptb_test_sentences(max_length: int) -> list[list[int]]:
    """PTB test sentences as ids, vocabulary from the training split (read directly: `datasets` is not needed)."""
    train, test = ([line for line in (DATA_DIR / "ptb" / f"ptb.{split}.txt").read_text().splitlines() if line.strip()]
                   for split in ("train", "test"))
    tokenizer = build_tokenizer(train, max_vocab_size=10_000)
    return sentence_ids(tokenizer, test, max_length=max_length)


def timed(function):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sentences", type=int, default=60, help="random test sentences for the batched run (0: all)")
    parser.add_argument("--loop-sentences", type=int, default=12, help="of those, how many the loop runs")
    parser.add_argument("--loop-chunk", type=int, default=100, help="samples per call in the loop (reference: 100)")
    parser.add_argument("--unbatched-sentences", type=int, default=1,
                        help="sentences for the one-sample-per-call row (0: skip it)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batched decoder call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", help="JSON file (default benchmarks/nll_speed_DEVICE.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = DEMVAEForGeneration(DEMVAEConfig()).to(args.device).eval()
    test = ptb_test_sentences(model.config.max_sentence_length)
    subset = random.Random(0).sample(test, args.sentences) if 0 < args.sentences < len(test) else test
    looped = subset[: args.loop_sentences]

    def loop(sentences, chunk):
        return torch.cat([
            sentence_log_likelihoods(model, [s], num_samples=args.samples, max_tokens=len(s) * chunk,
                                     seed=i)["log_likelihood"]
            for i, s in enumerate(sentences)
        ])

    sentence_log_likelihoods(model, looped[:2], num_samples=8)  # warm-up
    unbatched = subset[: args.unbatched_sentences]
    _, unbatched_seconds = timed(lambda: loop(unbatched, 1)) if unbatched else (None, 0.0)
    loop_ll, loop_seconds = timed(lambda: loop(looped, args.loop_chunk))
    batched, batched_seconds = timed(lambda: sentence_log_likelihoods(
        model, subset, num_samples=args.samples, max_tokens=args.batch_tokens, progress=True)["log_likelihood"])
    def tokens(sentences):  # predicted tokens: the decoder's work grows with them, not with the sentence count
        return sum(len(s) - 1 for s in sentences)

    measured = [("one sentence, one sample", unbatched, unbatched_seconds)] if unbatched else []
    measured += [("one sentence at a time", looped, loop_seconds), ("batched", subset, batched_seconds)]
    per_token = {name: seconds / tokens(sentences) for name, sentences, seconds in measured}
    ratio = per_token["one sentence at a time"] / per_token["batched"]
    unbatched_ratio = per_token["one sentence, one sample"] / per_token["batched"] if unbatched else None
    print(f"PTB test set: {len(test)} sentences ({tokens(test)} predicted tokens), {args.samples} samples each, "
          f"device {args.device}, {torch.get_num_threads()} CPU threads")
    print(f"{'method':<26}{'sentences':>10}{'tokens':>8}{'seconds':>10}{'ms/token':>10}{'full test set (s)':>19}")
    for name, sentences, seconds in measured:
        print(f"{name:<26}{len(sentences):>10}{tokens(sentences):>8}{seconds:>10.1f}{1000 * per_token[name]:>10.2f}"
              f"{per_token[name] * tokens(test):>19.0f}")
    print(f"speed-up of the batched NLL per token: {ratio:.1f}x over the reference-style loop ({args.loop_chunk} "
          "samples per call)" + (f", {unbatched_ratio:.0f}x over one sample per call" if unbatched else "")
          + "; full-test-set times extrapolated from the measured sentences")
    same = batched[: len(looped)]
    print(f"mean -log p(x) of the looped sentences: loop {-loop_ll.mean():.2f}, batched {-same.mean():.2f} nats "
          "(different random draws)")
    result = {
        "device": args.device, "threads": torch.get_num_threads(), "samples": args.samples,
        "test_sentences": len(test), "test_tokens": tokens(test), "loop_chunk": args.loop_chunk,
        "batch_tokens": args.batch_tokens,
        "measured": {name: {"sentences": len(sentences), "tokens": tokens(sentences), "seconds": seconds}
                     for name, sentences, seconds in measured},
        "speedup": ratio, "speedup_over_unbatched": unbatched_ratio,
        "extrapolated": len(subset) < len(test) or len(looped) < len(test),
        "loop_mean_nll": -loop_ll.mean().item(), "batched_mean_nll_same_sentences": -same.mean().item(),
    }
    output = Path(args.output or f"benchmarks/nll_speed_{torch.device(args.device).type}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
