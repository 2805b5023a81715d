"""The dialog model: masking, the stage-2 terms by hand, freezing, generation (tensors, chat format, component=),
save/load and remote code, and a small model trained on a synthetic corpus whose responses follow from the context."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn.functional as F
from conftest import BLOCK_OUR_PACKAGE
from dialog_helpers import stage2_inputs, synthetic_dialogs, synthetic_tokenizer, tiny_dialog_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from modeling_demvae import DEMVAEForDialogGeneration
from modeling_demvae.dialog_data import DialogCollator, tokenize_dialogs


@pytest.fixture(scope="module")
def tokenizer():
    return synthetic_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    """Four responses in context, contexts of one and three turns, padded as the collator pads them."""
    rows = tokenize_dialogs(synthetic_dialogs(4, seed=3), tokenizer)
    return DialogCollator(pad_token_id=tokenizer.pad_token_id)([rows[i] for i in range(len(rows))])


def eval_model(tokenizer, **overrides):
    return tiny_dialog_model(len(tokenizer), **overrides).eval()


def padded(batch, extra_turns: int, extra_tokens: int, turns_first: bool):
    """The batch with more padding: `extra_turns` empty turns (before the real ones, or after) and `extra_tokens`
    padded positions on the left of every turn's tokens."""
    ids, mask = batch["context_input_ids"], batch["context_attention_mask"]
    ids, mask = F.pad(ids, (extra_tokens, 0)), F.pad(mask, (extra_tokens, 0))
    turn_padding = (0, 0, extra_turns, 0) if turns_first else (0, 0, 0, extra_turns)
    return {**batch, "context_input_ids": F.pad(ids, turn_padding), "context_attention_mask": F.pad(mask, turn_padding)}


@pytest.mark.parametrize("turns_first", [False, True])
def test_padded_tokens_and_turns_change_nothing(tokenizer, batch, turns_first):
    model = eval_model(tokenizer)
    more = padded(batch, extra_turns=2, extra_tokens=3, turns_first=turns_first)
    assert more["context_input_ids"].shape[1:] == (batch["context_input_ids"].shape[1] + 2,
                                                  batch["context_input_ids"].shape[2] + 3)
    with torch.no_grad():
        plain, padded_out = model(**stage2_inputs(batch)), model(**stage2_inputs(more))
        for name in ("loss", "nll", "policy_loss", "consistency", "policy_logits", "logits"):
            torch.testing.assert_close(padded_out[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(model.policy(more["context_input_ids"], more["context_attention_mask"]),
                                   model.policy(batch["context_input_ids"], batch["context_attention_mask"]))
    generated = [model.generate(context_input_ids=b["context_input_ids"],
                                context_attention_mask=b["context_attention_mask"], max_new_tokens=6,
                                output_scores=True, return_dict_in_generate=True) for b in (batch, more)]
    assert torch.equal(generated[0].sequences, generated[1].sequences)
    for a, b in zip(generated[0].scores, generated[1].scores):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_padding_is_what_the_mask_says(tokenizer, batch):
    """A padded turn is masked, whatever its ids: garbage there changes nothing."""
    model = eval_model(tokenizer)
    noisy = dict(batch)
    noisy["context_input_ids"] = batch["context_input_ids"].masked_fill(batch["context_attention_mask"] == 0, 7)
    with torch.no_grad():
        torch.testing.assert_close(model(**stage2_inputs(noisy)).loss, model(**stage2_inputs(batch)).loss)


def test_stage2_terms_against_independent_computations(tokenizer, batch):
    """nll, the policy's cross-entropy toward the gold response's posterior c, and the consistency term, each by
    hand with torch ops from the model's tensors; the loss is nll + policy + 0.1 consistency."""
    model = eval_model(tokenizer)
    with torch.no_grad():
        out = model(**stage2_inputs(batch))
        ids, mask = batch["input_ids"], batch["attention_mask"]
        posterior = model.response_vae.encode(ids, mask)
        gold = posterior.component_probs.argmax(-1)  # (B, G)
        assert torch.equal(out.components, gold)
        policy_log_probs = torch.log_softmax(model.policy_logits(model.encode_context(
            batch["context_input_ids"], batch["context_attention_mask"])), -1)
        torch.testing.assert_close(out.policy_logits.log_softmax(-1), policy_log_probs)
        policy = -sum(policy_log_probs[b, g, gold[b, g]] for b in range(len(ids)) for g in range(gold.shape[1]))
        torch.testing.assert_close(out.policy_loss, policy / len(ids))

        log_probs = out.logits.log_softmax(-1)
        nll = -sum(log_probs[b, t, ids[b, t + 1]] for b in range(len(ids)) for t in range(int(mask[b].sum()) - 1))
        torch.testing.assert_close(out.nll, nll / len(ids))

        embedding = model.response_vae.encoder.embedding.weight
        consistency = 0.0
        for b in range(len(ids)):
            length = int(mask[b].sum())
            soft = [sum(p * embedding[v] for v, p in enumerate(out.logits[b, t].softmax(-1)))
                    for t in range(length - 1)]
            expected = [embedding[ids[b, 0]], *soft]
            encoded = model.response_vae.encoder(torch.stack(expected).unsqueeze(0), torch.tensor([length]))
            logits = model.response_vae.posterior(encoded).component_logits[0]
            consistency -= sum(logits[g].log_softmax(-1)[gold[b, g]] for g in range(gold.shape[1]))
        torch.testing.assert_close(out.consistency, consistency / len(ids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.loss, out.nll + out.policy_loss + 0.1 * out.consistency)


def test_stage1_is_the_response_vae(tokenizer, batch):
    model = eval_model(tokenizer, response={"deterministic_eval": True})
    with torch.no_grad():
        stage1 = model(batch["input_ids"], batch["attention_mask"], stage=1, kl_weight=0.5)
        alone = model.response_vae(batch["input_ids"], batch["attention_mask"], kl_weight=0.5)
    assert torch.equal(stage1.loss, alone.loss) and torch.equal(stage1.dispersion, alone.dispersion)
    with pytest.raises(ValueError, match="stage must be 1"):
        model(**stage2_inputs(batch), stage=3)


def test_stage2_step_leaves_the_response_vae_and_prior_unchanged(tokenizer, batch):
    model = tiny_dialog_model(len(tokenizer), response={"dropout": 0.3}).train()
    model.freeze_response_vae()
    model.train()  # a trainer's call: the frozen VAE stays in eval mode (no dropout)
    assert not model.response_vae.training and model.context_encoder.training
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)  # all of them, as a careless trainer
    model(**stage2_inputs(batch)).loss.backward()
    optimizer.step()
    after = model.state_dict()
    frozen = [name for name in before if name.startswith("response_vae.")]
    assert "response_vae.prior.means" in frozen and "response_vae.prior.log_variances" in frozen
    assert all(torch.equal(before[name], after[name]) for name in frozen)
    trained = [name for name in before if not name.startswith("response_vae.")]
    assert all(not torch.equal(before[name], after[name]) for name in trained
               if name not in ("decoder.embedding.weight", "lm_head.weight")), "every other part learns"
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])


def test_generate_from_a_chat_equals_the_tensor_input(tokenizer):
    """A conversation in chat format through the tokenizer's template gives the data pipeline's tensors: the same
    responses and actions, with at most `context_turns` turns of `max_utterance_length` tokens kept."""
    model = eval_model(tokenizer, context_turns=2, max_utterance_length=6)
    conversations = [row["context"] for row in synthetic_dialogs(6, seed=4)]
    conversations[0] = [{"role": "user", "content": "take me to the bank and the park and the zoo please"},
                        {"role": "assistant", "content": "the zoo is five miles away ."}, *conversations[0]]
    assert any(len(conversation) == 1 for conversation in conversations)
    chat = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, return_dict=True,
                                         return_tensors="pt", padding=True)
    from_chat = model.generate(**chat, max_new_tokens=6, return_dict_in_generate=True)

    rows = synthetic_dialogs(6, seed=4).to_dict()
    rows["context"] = [conversation[-2:] for conversation in conversations]
    data = tokenize_dialogs(type(synthetic_dialogs(1)).from_dict(rows), tokenizer, max_utterance_length=6)
    collated = DialogCollator(pad_token_id=tokenizer.pad_token_id)([data[i] for i in range(len(data))])
    assert collated["context_input_ids"][0, 0].tolist()[:2] == tokenizer.convert_tokens_to_ids(["<s>", "<sys>"])
    prompt = torch.tensor([tokenizer.convert_tokens_to_ids(["<s>", "<sys>"])]).expand(len(conversations), -1)
    from_tensors = model.generate(prompt, context_input_ids=collated["context_input_ids"],
                                  context_attention_mask=collated["context_attention_mask"], max_new_tokens=6,
                                  return_dict_in_generate=True)
    width = chat["input_ids"].shape[1]
    assert torch.equal(from_chat.sequences[:, :width], chat["input_ids"])  # the conversation, then the response
    assert torch.equal(from_chat.sequences[:, width:], from_tensors.sequences[:, 2:])
    assert torch.equal(from_chat.components, from_tensors.components)


def test_policy_chooses_and_component_overrides(tokenizer, batch):
    model = eval_model(tokenizer)
    context = {"context_input_ids": batch["context_input_ids"],
               "context_attention_mask": batch["context_attention_mask"]}
    probs = model.policy(**context)
    assert probs.shape == (4, 2, 3) and torch.allclose(probs.sum(-1), torch.ones(4, 2))
    chosen = model.generate(**context, max_new_tokens=4, return_dict_in_generate=True)
    assert torch.equal(chosen.components, probs.argmax(-1))
    groups = torch.arange(2)
    assert torch.equal(chosen.cache.latent, model.response_vae.prior.means[groups, probs.argmax(-1)].flatten(1))

    forced = model.generate(**context, component=[2, 0], max_new_tokens=4, return_dict_in_generate=True)
    assert forced.components.tolist() == [[2, 0]] * 4
    assert torch.equal(forced.cache.latent, model.response_vae.prior.means[groups, torch.tensor([2, 0])]
                       .flatten().expand(4, -1))
    sampled = model.generate(**context, do_sample=True, num_return_sequences=3, max_new_tokens=4,
                             return_dict_in_generate=True, sample_latent=True)
    assert sampled.sequences.shape[0] == sampled.components.shape[0] == 12
    beams = model.generate(**context, component=[1, 1], num_beams=3, max_new_tokens=4, return_dict_in_generate=True)
    assert beams.components.tolist() == [[1, 1]] * 4


def test_step_by_step_decoding_equals_teacher_forcing(tokenizer, batch):
    """The cache carries the state, the latent and the context: decoding a response token by token gives the
    logits of reading it at once."""
    model = eval_model(tokenizer)
    context = model.encode_context(batch["context_input_ids"], batch["context_attention_mask"])
    latent = model.component_latent(torch.tensor([[0, 1]] * 4))
    encoded = {"context_state": context.state, "context_memory": context.memory,
               "context_memory_mask": context.memory_mask}
    ids = batch["input_ids"][:, :5]
    with torch.no_grad():
        whole = model(ids, latent=latent, **encoded).logits
        step = model(ids[:, :1], latent=latent, **encoded)
        logits = [step.logits]
        for t in range(1, ids.shape[1]):
            step = model(ids[:, t:t + 1], cache=step.cache)
            logits.append(step.logits)
    torch.testing.assert_close(torch.cat(logits, 1), whole)


def test_save_load_and_auto_classes(tokenizer, batch, tmp_path):
    model = eval_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "demvae_dialog" and config["response_config"]["num_groups"] == 2
    assert config["auto_map"] == {"AutoConfig": "configuration_dialog.DEMVAEDialogConfig",
                                  "AutoModelForCausalLM": "modeling_dialog.DEMVAEForDialogGeneration"}
    assert {"modeling_dialog.py", "dialog_networks.py", "conversation.py", "modeling_demvae.py"} <= set(
        os.listdir(tmp_path))
    with torch.no_grad():
        expected = model(**stage2_inputs(batch)).loss
        for loaded in (DEMVAEForDialogGeneration.from_pretrained(tmp_path),
                       AutoModelForCausalLM.from_pretrained(tmp_path)):
            assert isinstance(loaded, DEMVAEForDialogGeneration) and not loaded.training
            assert torch.equal(loaded(**stage2_inputs(batch)).loss, expected)
            assert loaded.lm_head.weight.data_ptr() == loaded.decoder.embedding.weight.data_ptr()
            assert (loaded.response_vae.lm_head.weight.data_ptr()
                    == loaded.response_vae.decoder.embedding.weight.data_ptr())
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "DEMVAEDialogConfig"
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template == tokenizer.chat_template


def test_a_sentence_model_starts_the_response_vae(tokenizer, batch):
    sentence = tiny_dialog_model(len(tokenizer), seed=5).response_vae.eval()
    model = DEMVAEForDialogGeneration.from_response_vae(sentence, context_hidden_size=12).eval()
    assert model.config.context_hidden_size == 12
    with torch.no_grad():
        torch.manual_seed(0)
        expected = sentence(batch["input_ids"])
        torch.manual_seed(0)
        assert torch.equal(model(batch["input_ids"], stage=1).loss, expected.loss)


def test_trust_remote_code_without_our_package(tokenizer, tmp_path, tmp_path_factory):
    model = eval_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    conversation = [{"role": "user", "content": "what is the weather in oslo"}]
    chat = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=True,
                                         return_tensors="pt")
    expected = model.generate(**chat, max_new_tokens=6, return_dict_in_generate=True)
    script = BLOCK_OUR_PACKAGE + textwrap.dedent(
        f"""
        import json, torch
        torch.set_num_threads({torch.get_num_threads()})
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        tokenizer = AutoTokenizer.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        chat = tokenizer.apply_chat_template({conversation!r}, add_generation_prompt=True, return_dict=True,
                                             return_tensors="pt")
        out = model.generate(**chat, max_new_tokens=6, return_dict_in_generate=True)
        print(json.dumps({{"sequences": out.sequences.tolist(), "components": out.components.tolist()}}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path_factory.mktemp("hf_home")))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=tmp_path_factory.mktemp("elsewhere"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote == {"sequences": expected.sequences.tolist(), "components": expected.components.tolist()}


def components_of_responses(model, sequences: torch.Tensor) -> torch.Tensor:
    """q(c|x)'s argmax of generated responses, each read up to its first `</s>`."""
    eos = sequences.eq(model.config.eos_token_id).long().cumsum(1)
    mask = (eos == 0) | ((eos == 1) & sequences.eq(model.config.eos_token_id))
    return model.response_vae.encode(sequences, mask.long()).component_probs.argmax(-1)


def test_policy_and_consistency_on_synthetic_dialogs(tokenizer):
    """Stage 1 trains the response VAE, stage 2 (VAE frozen) the context side; on held-out contexts the policy
    picks the gold response's posterior action, and greedy responses decoded from an action read back as it."""
    start = time.monotonic()
    torch.manual_seed(0)
    data = tokenize_dialogs(synthetic_dialogs(400, seed=0), tokenizer)
    collate = DialogCollator(pad_token_id=tokenizer.pad_token_id)
    model = tiny_dialog_model(len(tokenizer), response={
        "num_groups": 1, "num_components": 4, "dropout": 0.0, "dispersion_weight": 0.5,
        "kl_annealing_midpoint": 100, "kl_annealing_slope": 0.05}).train()
    generator = torch.Generator().manual_seed(1)

    def batches(steps):
        for step in range(steps):
            yield step, collate([data[i] for i in torch.randint(len(data), (32,), generator=generator).tolist()])

    optimizer = torch.optim.Adam(model.response_vae.parameters(), lr=0.01)
    for step, batch in batches(300):
        loss = model(batch["input_ids"], batch["attention_mask"], stage=1,
                     kl_weight=model.config.response_config.kl_weight(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.freeze_response_vae()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.03)
    for _, batch in batches(150):
        loss = model(**stage2_inputs(batch)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    test = tokenize_dialogs(synthetic_dialogs(200, seed=9), tokenizer)
    batch = collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        gold = model(**stage2_inputs(batch)).components
        policy = model.policy(batch["context_input_ids"], batch["context_attention_mask"]).argmax(-1)
    generated = model.generate(context_input_ids=batch["context_input_ids"],
                               context_attention_mask=batch["context_attention_mask"], return_dict_in_generate=True)
    with torch.no_grad():
        read_back = components_of_responses(model, generated.sequences)
    policy_accuracy = (policy == gold).all(-1).float().mean().item()
    consistency = (read_back == generated.components).all(-1).float().mean().item()
    print(f"policy accuracy {policy_accuracy:.3f}, action consistency {consistency:.3f}, "
          f"{time.monotonic() - start:.1f} s")
    assert len(gold.unique()) >= 2, "the response VAE uses several actions"
    assert policy_accuracy >= 0.9 and consistency >= 0.9
