"""Training-step speed: our DGM-VAE step against a reimplementation of the reference step, same data, same model.

Each variant runs in its own worker process (so peak memory is its own), in alternating rounds; the table reports
the median tokens per second (real tokens: <s> ... </s>, padding not counted), the ratio of the medians to the
reference's, the range of each round's ratio to that round's reference run, and peak memory. Variants:
  reference   every batch padded to 40 tokens, no packing, no length bucketing, loss as in benchmarks/reference_step.py,
              Adam as the reference code runs it (a pass over the parameters per operation)
  ours        length-bucketed batches, the encoder's state read at each sentence's last real token,
              the CPU training GRU (modeling_demvae/gru.py), DEMVAEForGeneration.forward's loss, the trainer's
              fused Adam
  ours-bf16   the same under bf16 autocast: on a CPU, the CPU GRU with bf16 products and float32 weights, gates and
              state, and the output layer in bf16 with a float32 loss. Run by default where the CPU has bf16 units
              (AMX, AVX-512 bf16, Arm bf16) or the GPU has bf16; elsewhere bf16 is emulated, several times slower
              than float32, so it is skipped unless --variants names it, and then labelled emulated
Both of ours draw each step's posterior noise from a generator seeded by the step, so their losses compare.

--loss-check N runs ours and ours-bf16 for N steps each from the same weights, batches, noise and dropout masks,
and reports the mean loss of each and their relative difference (the bf16 acceptance point: within 1% over 500 PTB
steps, on a CPU with bf16 units).

    python benchmarks/train_speed.py                       # CPU, reference model size, PTB
    python benchmarks/train_speed.py --threads 2 --rounds 6
    python benchmarks/train_speed.py --loss-check 500
    python benchmarks/train_speed.py --device cuda --steps 50
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demvae.precision import bf16_capability, has_fast_bf16  # noqa: E402
from reference_step import pad_to, reference_loss  # noqa: E402

VARIANTS = ("reference", "ours", "ours-bf16")
BATCH_SIZE, MAX_LENGTH, CLIP = 30, 40, 0.5
LOSS_TOLERANCE = 0.01  # the bf16 mean loss against float32's, over --loss-check steps


def load_ptb_ids(data_dir: str | None) -> tuple[list[list[int]], int]:
    from modeling_demvae import build_tokenizer
    from modeling_demvae.data import default_data_dir, read_sentences, sentence_ids

    path = Path(data_dir) if data_dir else default_data_dir()
    sentences = read_sentences(path / "ptb" / "ptb.train.txt")
    tokenizer = build_tokenizer(sentences, max_vocab_size=10_000)
    ids = sentence_ids(tokenizer, sentences, max_length=MAX_LENGTH)
    return ids, len(tokenizer)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned, asynchronous host-to-GPU copy, so the host keeps queueing work."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_worker(variant: str, args) -> dict:
    from demvae.trainer import adam

    from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration
    from modeling_demvae.data import LengthBucketBatchSampler, PaddingCollator

    if args.threads:
        torch.set_num_threads(args.threads)
    steps, warmup = (args.loss_check, 0) if args.loss_check else (args.steps, args.warmup)
    torch.manual_seed(0)
    ids, vocab_size = load_ptb_ids(args.data_dir)
    device = torch.device(args.device)
    model = DEMVAEForGeneration(DEMVAEConfig(vocab_size=vocab_size)).to(device).train()
    # the reference step with the reference code's Adam; ours with the trainer's (fused)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3) if variant == "reference" else adam(
        model.parameters(), learning_rate=1e-3)
    lengths = np.array([len(x) for x in ids])
    if variant == "reference":
        rng = np.random.default_rng(0)
        batches = [rng.choice(len(ids), BATCH_SIZE, replace=False).tolist() for _ in range(steps + warmup)]
    else:
        batches = list(LengthBucketBatchSampler(lengths, BATCH_SIZE, seed=0, drop_last=True))
    collate = PaddingCollator(pad_token_id=model.config.pad_token_id)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant == "ours-bf16")

    def step(number, indices) -> float:
        if variant == "reference":
            loss = reference_loss(model, pad_to([ids[i] for i in indices], MAX_LENGTH, 0).to(device), kl_weight=1.0)
        else:
            batch = collate([{"input_ids": ids[i]} for i in indices])  # labels are derived from the mask
            input_ids, mask = (to_device(batch[k], device) for k in ("input_ids", "attention_mask"))
            noise = model.posterior_noise(len(indices), generator=torch.Generator(device).manual_seed(number))
            with autocast:
                loss = model(input_ids, mask, kl_weight=1.0, posterior_noise=noise).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        return loss.item()

    for number, indices in enumerate(batches[:warmup]):
        step(number, indices)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mib()
    tokens, losses, start = 0, [], time.perf_counter()
    for number, indices in enumerate(batches[warmup: warmup + steps], start=warmup):
        losses.append(step(number, indices))
        tokens += int(lengths[indices].sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is KiB on Linux: the process peak, less what was resident before the timed steps
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
    return {"variant": variant, "tokens_per_second": tokens / seconds, "seconds_per_step": seconds / steps,
            "peak_memory_mib": peak, "mean_loss": statistics.fmean(losses), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every variant (default: 2)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of {VARIANTS} (default: all where bf16 runs in hardware, "
                             "else reference,ours)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's)")
    parser.add_argument("--loss-check", type=int, default=0, metavar="N",
                        help="instead of timing: N steps of ours and ours-bf16 each, and their mean losses")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding ptb/ (default: DEMVAE_DATA_DIR or ../shared/data)")
    parser.add_argument("--output", default=None,
                        help="JSON file for the results (default: benchmarks/train_speed_<device>.json)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return

    fast_bf16 = has_fast_bf16(args.device)
    if args.loss_check:
        variants, args.rounds = ["ours", "ours-bf16"], 1
    elif args.variants:
        variants = args.variants.split(",")
    else:
        variants = list(VARIANTS if fast_bf16 else VARIANTS[:2])
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    print(f"{args.device}: {bf16_capability(args.device)}", file=sys.stderr)
    if not fast_bf16 and "ours-bf16" not in variants:
        print("ours-bf16 skipped: without bf16 units its time means nothing (--variants ours-bf16 runs it anyway)",
              file=sys.stderr)
    runs = {v: [] for v in variants}
    for round_index in range(args.rounds):
        for variant in variants:
            command = [sys.executable, __file__, "--worker", variant, *sys.argv[1:]]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode:
                sys.exit(f"worker {variant} failed:\n{result.stderr[-3000:]}")
            runs[variant].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1}/{args.rounds} {variant}: "
                  f"{runs[variant][-1]['tokens_per_second']:.0f} tokens/s", file=sys.stderr)

    def median(variant, key):
        return statistics.median(r[key] for r in runs[variant])

    def label(variant):
        return f"{variant} (emulated)" if variant == "ours-bf16" and not fast_bf16 else variant

    base = median("reference", "tokens_per_second") if "reference" in runs else None
    rows = []
    steps = args.loss_check or args.steps
    print(f"\nDGM-VAE training step, reference size (PTB, batch {BATCH_SIZE}, 1 posterior sample), device "
          f"{args.device}: {bf16_capability(args.device)}; {runs[variants[0]][0]['threads']} threads, torch "
          f"{torch.__version__}, " + (f"{steps} steps from the start" if args.loss_check
                                      else f"median of {args.rounds} rounds of {steps} steps"))
    print(f"{'variant':<22}{'tokens/s':>10}{'s/step':>10}{'ratio':>8}{'per round: median (range)':>27}"
          f"{'peak MiB':>10}{'mean loss':>11}")
    for variant in variants:
        speed = median(variant, "tokens_per_second")
        ratio = speed / base if base else float("nan")
        # each round's ratio to the reference run just before it: the machine's slow drifts cancel in the pair
        paired = [r["tokens_per_second"] / b["tokens_per_second"] for r, b in zip(runs[variant], runs["reference"])
                  ] if base else [float("nan")]
        row = {"variant": variant, "emulated_bf16": variant == "ours-bf16" and not fast_bf16,
               "tokens_per_second": speed, "seconds_per_step": median(variant, "seconds_per_step"),
               "speed_ratio_to_reference": ratio, "speed_ratio_per_round": paired,
               "peak_memory_mib": median(variant, "peak_memory_mib"), "mean_loss": median(variant, "mean_loss"),
               "runs": runs[variant]}
        rows.append(row)
        per_round = f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
        print(f"{label(variant):<22}{speed:>10.0f}{row['seconds_per_step']:>10.3f}{ratio:>8.2f}{per_round:>27}"
              f"{row['peak_memory_mib']:>10.0f}{row['mean_loss']:>11.3f}")
    result = {"device": args.device, "machine": bf16_capability(args.device), "torch": torch.__version__,
              "steps": steps, "rounds": args.rounds, "results": rows}
    if {"ours", "ours-bf16"} <= set(runs):
        loss32, loss16 = median("ours", "mean_loss"), median("ours-bf16", "mean_loss")
        result["bf16_mean_loss_difference"] = (loss16 - loss32) / loss32
        verdict = "within" if abs(loss16 - loss32) <= LOSS_TOLERANCE * loss32 else "NOT within"
        print(f"bf16 mean loss {loss16:.3f} against float32 {loss32:.3f} over the same {steps} steps: "
              f"{100 * result['bf16_mean_loss_difference']:+.2f}%, {verdict} {LOSS_TOLERANCE:.0%}")
    suffix = f"_loss_check_{args.loss_check}" if args.loss_check else ""
    output = Path(args.output or Path(__file__).parent / f"train_speed_{args.device}{suffix}.json")
    output.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
