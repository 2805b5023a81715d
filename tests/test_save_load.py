"""Saving and loading: our classes, the Auto classes, and trust_remote_code without our package."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import BLOCK_OUR_PACKAGE, tiny_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from modeling_demvae import DEMVAEForGeneration, build_tokenizer

FAMILIES = {"gaussian": {}, "categorical": {"prior_family": "categorical", "num_groups": 1, "categorical_size": 3,
                                         "gumbel_hard": False}}  # the estimator that is not the default


@pytest.fixture(params=sorted(FAMILIES))
def saved(tmp_path, request):
    texts = ["the cat sat on the mat", "a dog ran home", "the dog sat"]
    tokenizer = build_tokenizer(texts)
    model = tiny_model(vocab_size=len(tokenizer), **FAMILIES[request.param]).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path, model, tokenizer


def test_folder_layout(saved):
    folder, _, _ = saved
    names = set(os.listdir(folder))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "modeling_demvae.py", "configuration_demvae.py", "priors.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "demvae"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_demvae.DEMVAEConfig",
        "AutoModelForCausalLM": "modeling_demvae.DEMVAEForGeneration",
    }


def outputs(model, input_ids, attention_mask):
    torch.manual_seed(0)
    out = model(input_ids, attention_mask)
    torch.manual_seed(0)
    generated = model.generate(num_samples=3, max_new_tokens=6)
    return out.loss, out.logits, generated


def test_reload_gives_identical_outputs(saved):
    folder, model, tokenizer = saved
    batch = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True)
    expected = outputs(model, batch["input_ids"], batch["attention_mask"])
    for loaded in (DEMVAEForGeneration.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)):
        assert isinstance(loaded, DEMVAEForGeneration) and not loaded.training
        for a, b in zip(expected, outputs(loaded, batch["input_ids"], batch["attention_mask"])):
            assert torch.equal(a, b)
        assert loaded.lm_head.weight.data_ptr() == loaded.decoder.embedding.weight.data_ptr()
    assert type(AutoConfig.from_pretrained(folder)).__name__ == "DEMVAEConfig"
    reloaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert reloaded_tokenizer("the cat sat")["input_ids"] == tokenizer("the cat sat")["input_ids"]


def test_trust_remote_code_without_our_package(saved, tmp_path_factory):
    folder, model, tokenizer = saved
    batch = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True)
    loss, logits, generated = outputs(model, batch["input_ids"], batch["attention_mask"])
    script = BLOCK_OUR_PACKAGE + textwrap.dedent(
        f"""
        import json, torch
        torch.set_num_threads({torch.get_num_threads()})  # same summation order as the parent: exact equality
        try:
            import modeling_demvae
            raise SystemExit("modeling_demvae should not be importable here")
        except ImportError:
            pass
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        batch = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True)
        torch.manual_seed(0)
        out = model(batch["input_ids"], batch["attention_mask"])
        torch.manual_seed(0)
        generated = model.generate(num_samples=3, max_new_tokens=6)
        unknown = tokenizer(["the zebra sat </s>", "a dog"], padding=True)["input_ids"]
        print(json.dumps({{"loss": out.loss.item(), "logits": out.logits.tolist(), "generated": generated.tolist(),
                          "decoded": tokenizer.batch_decode(unknown, skip_special_tokens=True),
                          "gumbel_hard": model.config.gumbel_hard}}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path_factory.mktemp("hf_home")))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env,
        cwd=tmp_path_factory.mktemp("elsewhere"), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["loss"] == loss.item()
    assert torch.equal(torch.tensor(remote["logits"]), logits)
    assert remote["generated"] == generated.tolist()
    assert remote["decoded"] == ["the <unk> sat", "a dog"]  # the folder's own tokenization_demvae.py keeps <unk>
    assert remote["gumbel_hard"] is model.config.gumbel_hard


def test_not_our_checkpoint_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    with pytest.raises(ValueError, match="holds a .gpt2. model, not a DEM-VAE one"):
        DEMVAEForGeneration.from_pretrained(tmp_path)


def test_vae_prior_is_standard_normal_after_reload(tmp_path):
    """The VAE's fixed N(0, I) is not in the checkpoint; loading must not leave it uninitialised memory."""
    model = tiny_model(variant="vae")
    model.save_pretrained(tmp_path)
    loaded = DEMVAEForGeneration.from_pretrained(tmp_path)
    assert torch.equal(loaded.prior.means, torch.zeros_like(loaded.prior.means))
    assert torch.equal(loaded.prior.log_variances, torch.zeros_like(loaded.prior.log_variances))
