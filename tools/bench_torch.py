#!/usr/bin/env python3
"""PyTorch / transformers CPU baseline for the Rust Qwen2.5-VL (`bench-44m` preset).

Developer tool, not run by CI.  Random-init Qwen2.5-VL in float32 with the same shape as
`Qwen25VlConfig::bench_44m()` in src/model/config.rs (text hidden 512, 8 layers, 8 heads,
2 KV heads, intermediate 1408, vocab 32000, untied lm_head; vision depth 4, hidden 256,
4 heads, intermediate 512, out 512, full attention in blocks 1 and 3), and times, for each
attention implementation (eager, sdpa):

* prefill: one forward pass over a 512-token text-only prompt (batch 1, KV cache on);
* decode: 128 greedy steps with the KV cache after that prompt (a manual loop over
  `past_key_values`, eos never checked), reported per token;
* vision: `model.visual(pixel_values, grid_thw)` on one 448x448 image preprocessed by the
  real (slow, PIL) Qwen2VLImageProcessor (1024 patches -> 256 merged tokens).

Each is warmed up, then the median (and min/max) of --repeats runs is reported, together
with the process's peak RSS (getrusage).  `--save DIR` writes the random weights as a
Hugging Face checkpoint folder (flat released-style config.json + model.safetensors) so the
Rust benchmark can load exactly the same model.  `--bf16-weights` rounds them to bfloat16 and
saves them in bf16 like the released Qwen2.5-VL checkpoints; both sides still compute in
float32 (the upcast is exact), so the numbers are the same, only the storage differs.

    .venv/bin/python tools/bench_torch.py --threads 2 --json /tmp/bench_torch.json --save /tmp/bench44m
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 32000


def flat_config() -> dict:
    # special ids at the top of the small vocabulary, as Qwen25VlConfig::with_small_vocab_ids
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "vocab_size": VOCAB,
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 8,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": VOCAB - 2,
        "eos_token_id": VOCAB - 2,
        "vision_start_token_id": VOCAB - 6,
        "vision_end_token_id": VOCAB - 5,
        "image_token_id": VOCAB - 4,
        "video_token_id": VOCAB - 3,
        "torch_dtype": "float32",
        "vision_config": {
            "depth": 4,
            "hidden_size": 256,
            "hidden_act": "silu",
            "intermediate_size": 512,
            "num_heads": 4,
            "in_chans": 3,
            "out_hidden_size": 512,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1, 3],
        },
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(fn, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "runs_s": ts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--image", type=int, default=448, help="square image side in pixels (multiple of 28)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--decode-repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--bf16-weights",
        action="store_true",
        help="round the random weights to bfloat16 and save them in bf16, as the released checkpoints are; "
        "both sides still compute in float32 (exact upcast)",
    )
    ap.add_argument("--save", type=Path, help="write the random weights as a HF checkpoint folder here")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args()

    import numpy as np
    import PIL
    import torch
    import transformers
    from PIL import Image
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    flat = flat_config()
    cfg = Qwen2_5_VLConfig(**copy.deepcopy({k: v for k, v in flat.items() if k not in ("architectures", "model_type")}))
    t0 = time.perf_counter()
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    init_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_text = sum(p.numel() for p in model.model.language_model.parameters())
    n_vis = sum(p.numel() for p in model.model.visual.parameters())

    tmp = None
    save_dir = a.save
    if save_dir is None:
        tmp = tempfile.TemporaryDirectory()
        save_dir = Path(tmp.name)
    save_dir.mkdir(parents=True, exist_ok=True)
    if a.bf16_weights:
        model = model.to(torch.bfloat16)
    model.save_pretrained(save_dir, safe_serialization=True)
    hf_cfg = (save_dir / "config.json").read_text()
    (save_dir / "config_hf_nested.json").write_text(hf_cfg)
    (save_dir / "config.json").write_text(json.dumps(flat, indent=2) + "\n")
    del model

    g = torch.Generator().manual_seed(a.seed + 1)
    prompt = torch.randint(0, VOCAB - 8, (1, a.prefill), generator=g)
    rng = np.random.default_rng(a.seed)
    img = Image.fromarray(rng.integers(0, 256, (a.image, a.image, 3), dtype=np.uint8), "RGB")
    improc = Qwen2VLImageProcessor()  # defaults: min 3136, max 12845056 pixels -> 448x448 unchanged
    vis_in = improc(images=[img], return_tensors="pt")
    pv, thw = vis_in["pixel_values"], vis_in["image_grid_thw"]

    results = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "torch_parallel_info": torch.__config__.parallel_info().splitlines()[:6],
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP", "MKL"))},
        "cpu": subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout.strip(),
        "load_before": os.getloadavg(),
        "parameters": {"total": n_params, "text": n_text, "vision": n_vis},
        "init_s": init_s,
        "prefill_tokens": a.prefill,
        "decode_tokens": a.decode,
        "weights": "bfloat16 values (saved in bf16), computed in float32" if a.bf16_weights else "float32",
        "image": {"side": a.image, "grid_thw": thw.tolist(), "patches": int(pv.shape[0])},
        "by_attn": {},
    }

    for impl in a.attn.split(","):
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(save_dir, attn_implementation=impl, dtype=torch.float32).eval()
        r = {}
        with torch.inference_mode():

            def prefill():
                model.model.rope_deltas = None
                return model(input_ids=prompt, use_cache=True, logits_to_keep=1)

            r["prefill"] = timed(prefill, a.warmup, a.repeats)
            r["prefill"]["tokens_per_s"] = a.prefill / r["prefill"]["median_s"]
            r["peak_rss_mb_after_prefill"] = peak_rss_mb()

            def decode():
                model.model.rope_deltas = None
                out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                ids = [int(nxt)]  # the prefill's token, then one per decode step
                t0 = time.perf_counter()
                for i in range(a.decode):
                    out = model(
                        input_ids=nxt,
                        past_key_values=past,
                        use_cache=True,
                        cache_position=torch.tensor([a.prefill + i]),
                    )
                    past = out.past_key_values
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                    ids.append(int(nxt))
                return time.perf_counter() - t0, ids

            ds = []
            for k in range(a.warmup + a.decode_repeats):
                dt, ids = decode()
                if k >= a.warmup:
                    ds.append(dt)
            r["decode"] = {
                "median_s": statistics.median(ds),
                "runs_s": ds,
                "ms_per_token": 1000.0 * statistics.median(ds) / a.decode,
                "tokens_per_s": a.decode / statistics.median(ds),
                "context": f"after a {a.prefill}-token prompt (prefill not timed)",
            }
            # sanity: the manual loop decodes what model.generate decodes (first 8 tokens)
            model.model.rope_deltas = None
            gen = model.generate(
                input_ids=prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0
            )
            r["decode"]["matches_generate_first8"] = gen[0, a.prefill :].tolist() == ids[:8]
            r["peak_rss_mb_after_decode"] = peak_rss_mb()

            r["vision"] = timed(lambda: model.visual(pv, grid_thw=thw), a.warmup, a.repeats)
            r["peak_rss_mb_after_vision"] = peak_rss_mb()
        results["by_attn"][impl] = r
        print(
            f"{impl}: prefill {a.prefill} tok {r['prefill']['median_s']:.3f} s ({r['prefill']['tokens_per_s']:.0f} tok/s), "
            f"decode {r['decode']['ms_per_token']:.1f} ms/tok ({r['decode']['tokens_per_s']:.1f} tok/s, "
            f"matches generate: {r['decode']['matches_generate_first8']}), "
            f"vision {a.image}x{a.image} {r['vision']['median_s']:.3f} s, peak RSS {r['peak_rss_mb_after_vision']:.0f} MB",
            flush=True,
        )
        del model
    results["load_after"] = os.getloadavg()
    results["peak_rss_mb"] = peak_rss_mb()
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "by_attn"}, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
