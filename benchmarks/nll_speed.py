"""Batched importance-weighted NLL vs a one-sentence-at-a-time loop of the same model, in float32 and bf16, in one run.

The loop is the reference code's way: one sentence per call, its samples in chunks of 100 (5 calls for 500 samples).
A row fully unbatched (one sentence and one sample per call) shows what batching over samples alone is worth; it
runs on a few sentences only. The batched way puts many (sentence, sample) rows through the decoder per call,
sentences sorted by length; it runs in float32, then under bf16 autocast (the products in bf16, the latents,
log-softmax and weights in float32 and float64) with the same seed, so the two estimates differ only by rounding.
All go through `sentence_log_likelihoods`, so only the batching and the precision differ. On a CPU the batched run
(in bf16 where that runs, else float32) is timed again with the token cross-entropy in one block per decoder call,
as before it went in blocks of CPU_LOSS_TOKENS tokens (`modeling_demvae/metrics/likelihood.py`): the same numbers,
and the blocks' speed-up. A reference-size model (DEMVAEConfig defaults: 10k vocabulary, 512-unit GRUs, 20 x 5 x 2-d
latent) is randomly initialised: timing does not depend on the weights. The loops are slow, so they run on the first
--loop-sentences (--unbatched-sentences) sentences of the sample and their time per token is extrapolated to the
whole test set, as are the seconds per sentence; the batched runs cover --sentences (0: all). The authors'
evaluation took 1.54 s per sentence at 500 samples on a 2-core AMD EPYC.

The bf16 row runs by default only where the CPU has bf16 units (AMX, AVX-512 bf16, Arm bf16) or the GPU has bf16:
elsewhere bf16 is emulated, slower than float32, and its time means nothing (--bf16 yes runs it anyway, labelled).

  python benchmarks/nll_speed.py --threads 2        # PTB test set, 500 samples; prints a table, writes JSON
  python benchmarks/nll_speed.py --device cuda --sentences 0
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch
from demvae.precision import bf16_capability, has_fast_bf16

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer
from modeling_demvae.data import default_data_dir, sentence_ids
from modeling_demvae.metrics import likelihood, sentence_log_likelihoods

DATA_DIR = default_data_dir()
AUTHORS_SECONDS_PER_SENTENCE = 1.54  # 500 samples, 2-core AMD EPYC


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
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="the batched bf16 row: auto (where bf16 runs in hardware), yes (even emulated), no")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", help="JSON file (default benchmarks/nll_speed_DEVICE.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fast_bf16 = has_fast_bf16(args.device)
    run_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and fast_bf16)
    print(f"{args.device}: {bf16_capability(args.device)}")
    if not run_bf16:
        print("batched bf16 row skipped" + ("" if args.bf16 == "no" else ": without bf16 units its time means "
                                            "nothing (--bf16 yes runs it anyway)"))

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

    def batched():
        return sentence_log_likelihoods(model, subset, num_samples=args.samples, max_tokens=args.batch_tokens,
                                        progress=True)["log_likelihood"]

    def in_one_loss_block(estimate):  # the earlier way: one cross-entropy over a decoder call's rows (GPUs still)
        blocks, likelihood.CPU_LOSS_TOKENS = likelihood.CPU_LOSS_TOKENS, 2**62
        try:
            return estimate()
        finally:
            likelihood.CPU_LOSS_TOKENS = blocks

    def batched_in_bf16():
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16):
            return batched()

    sentence_log_likelihoods(model, looped[:2], num_samples=8)  # warm-up
    unbatched = subset[: args.unbatched_sentences]
    _, unbatched_seconds = timed(lambda: loop(unbatched, 1)) if unbatched else (None, 0.0)
    loop_ll, loop_seconds = timed(lambda: loop(looped, args.loop_chunk))
    batched_ll, batched_seconds = timed(batched)
    bf16_ll, bf16_seconds = timed(batched_in_bf16) if run_bf16 else (None, 0.0)
    bf16_name = "batched, bf16" + ("" if fast_bf16 else " (emulated)")
    on_cpu = torch.device(args.device).type == "cpu"
    fastest, fastest_ll = (bf16_name, bf16_ll) if run_bf16 else ("batched", batched_ll)
    one_block = f"{fastest}, one loss block"
    one_block_ll, one_block_seconds = (timed(lambda: in_one_loss_block(batched_in_bf16 if run_bf16 else batched))
                                       if on_cpu else (None, 0.0))

    def tokens(sentences):  # predicted tokens: the decoder's work grows with them, not with the sentence count
        return sum(len(s) - 1 for s in sentences)

    measured = [("one sentence, one sample", unbatched, unbatched_seconds)] if unbatched else []
    measured += [("one sentence at a time", looped, loop_seconds), ("batched", subset, batched_seconds)]
    measured += [(bf16_name, subset, bf16_seconds)] if run_bf16 else []
    measured += [(one_block, subset, one_block_seconds)] if on_cpu else []
    per_token = {name: seconds / tokens(sentences) for name, sentences, seconds in measured}
    per_sentence = {name: seconds * tokens(test) / len(test) for name, seconds in per_token.items()}
    ratio = per_token["one sentence at a time"] / per_token["batched"]
    unbatched_ratio = per_token["one sentence, one sample"] / per_token["batched"] if unbatched else None
    bf16_ratio = per_token["batched"] / per_token[bf16_name] if run_bf16 else None
    print(f"PTB test set: {len(test)} sentences ({tokens(test)} predicted tokens), {args.samples} samples each, "
          f"device {args.device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"{'method':<30}{'sentences':>10}{'tokens':>8}{'seconds':>10}{'ms/token':>10}{'s/sentence':>12}"
          f"{'full test set (s)':>19}")
    for name, sentences, seconds in measured:
        print(f"{name:<30}{len(sentences):>10}{tokens(sentences):>8}{seconds:>10.1f}{1000 * per_token[name]:>10.2f}"
              f"{per_sentence[name]:>12.2f}{per_token[name] * tokens(test):>19.0f}")
    print(f"speed-up of the batched NLL per token: {ratio:.1f}x over the reference-style loop ({args.loop_chunk} "
          "samples per call)" + (f", {unbatched_ratio:.0f}x over one sample per call" if unbatched else "")
          + "; seconds per sentence and full-test-set times extrapolated from the measured sentences")
    difference = (bf16_ll - batched_ll).abs() if run_bf16 else None
    if run_bf16:
        print(f"bf16 over float32, batched: {bf16_ratio:.2f}x; -log p(x) differs by {difference.mean():.3f} nats per "
              f"sentence on average (at most {difference.max():.3f})")
    if on_cpu:
        print(f"the loss in blocks of {likelihood.CPU_LOSS_TOKENS} tokens over one block per decoder call: "
              f"{per_token[one_block] / per_token[fastest]:.2f}x ({fastest}), the same numbers: "
              f"{torch.equal(one_block_ll, fastest_ll)}")
    print(f"the authors' evaluation: {AUTHORS_SECONDS_PER_SENTENCE} s per sentence at 500 samples (2-core AMD EPYC)")
    same = batched_ll[: len(looped)]
    print(f"mean -log p(x) of the looped sentences: loop {-loop_ll.mean():.2f}, batched {-same.mean():.2f} nats "
          "(different random draws)")
    result = {
        "device": args.device, "machine": bf16_capability(args.device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "samples": args.samples,
        "test_sentences": len(test), "test_tokens": tokens(test), "loop_chunk": args.loop_chunk,
        "batch_tokens": args.batch_tokens,
        "measured": {name: {"sentences": len(sentences), "tokens": tokens(sentences), "seconds": seconds,
                            "seconds_per_sentence": per_sentence[name]}
                     for name, sentences, seconds in measured},
        "speedup": ratio, "speedup_over_unbatched": unbatched_ratio, "bf16_speedup_over_float32": bf16_ratio,
        "bf16_emulated": run_bf16 and not fast_bf16,
        "bf16_mean_abs_nll_difference": difference.mean().item() if run_bf16 else None,
        "loss_block_speedup": per_token[one_block] / per_token[fastest] if on_cpu else None,
        "loss_blocks_same_numbers": torch.equal(one_block_ll, fastest_ll) if on_cpu else None,
        "authors_seconds_per_sentence": AUTHORS_SECONDS_PER_SENTENCE,
        "extrapolated": len(subset) < len(test) or len(looped) < len(test),
        "loop_mean_nll": -loop_ll.mean().item(), "batched_mean_nll_same_sentences": -same.mean().item(),
    }
    output = Path(args.output or f"benchmarks/nll_speed_{torch.device(args.device).type}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
