#!/usr/bin/env python3
"""Reference side of the core throughput benchmark (developer tool, never run by CI).

Runs the ViLaSR / ViLaVT reference Python functions, imported at run time from the user's own
checkouts (nothing of theirs is copied into this repository), single-threaded on the corpus that
``cargo bench --no-default-features --bench core_throughput`` writes to ``target/bench-corpus/``,
and prints items/s next to the Rust numbers:

* ViLaSR RL scoring  -- ``verl/utils/reward_score/gcot.py: gcot_compute_score`` (ViLaSR checkout)
* ViLaVT RL scoring  -- ``verl/utils/reward_score/gcot.py: gcot_compute_score`` (ViLaVT checkout;
  it imports ``..vilavt_utils.parse_dialogue``)
* Rendering          -- ViLaSR ``utils/edit_image.py``: ``parse_bbox_and_movement``, the grouping by
  ``index`` of ``eval/infer.py: process_single_response`` (a few lines of glue written here, since
  that file imports vLLM), ``merge_bbox_movement``, ``Image.copy``, ``plot_bounding_boxes``,
  ``plot_movement`` -- per response.

Setup (outside the repository; PyPI's torch pulls several GB of CUDA wheels, which is fine for
this developer script):

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install pillow==12.3.0 numpy torch rouge_score math-verify
    /tmp/benchvenv/bin/python tools/bench_reference.py \\
        --vilasr-repo /path/to/ViLaSR --vilavt-repo /path/to/ViLaVT --corpus target/bench-corpus

If ``torch`` cannot be imported, the script substitutes a numpy float32 stand-in for the few torch
calls the MRA uses and labels every result with it. If ``qwen_vl_utils`` (imported by ViLaVT's
``vilavt_utils`` for ``fetch_image``, which the reward never calls) is missing, a stub module is
installed and reported. The references ``print`` on every call; stdout is sent to /dev/null while
timing (the formatting and writes still happen, as in a training log).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

NOTES: list[str] = []


def load_file(name: str, path: Path) -> types.ModuleType:
    """Import one file as module ``name`` without running any package ``__init__``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def namespace_package(name: str, path: Path) -> None:
    """A package object for ``name`` rooted at ``path`` whose ``__init__`` is not executed (the
    checkouts' ``verl/__init__`` files pull in the whole training stack)."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(path)]  # type: ignore[attr-defined]
    sys.modules[name] = pkg


def install_torch_standin() -> None:
    """numpy float32 stand-in for the torch calls in ``mean_relative_accuracy`` (used only when
    torch cannot be imported; results are labelled)."""
    import numpy as np

    class T:
        def __init__(self, a):
            self.a = np.asarray(a, dtype=np.float32)

        def __sub__(self, o):
            return T(self.a - o.a)

        def __rsub__(self, o):
            return T(np.float32(o) - self.a)

        def __add__(self, o):
            return T(self.a + (o.a if isinstance(o, T) else np.float32(o)))

        def __truediv__(self, o):
            return T(self.a / o.a)

        def __lt__(self, o):
            return T(self.a < o.a)

        def __le__(self, o):
            return T(self.a <= o.a)

        def float(self):
            return T(self.a.astype(np.float32))

        def mean(self):
            return T(self.a.mean(dtype=np.float32))

        def item(self):
            return float(self.a)

    torch = types.ModuleType("torch")
    torch.float32 = np.float32  # type: ignore[attr-defined]
    torch.is_tensor = lambda x: isinstance(x, T)  # type: ignore[attr-defined]
    torch.tensor = lambda x, dtype=None: T(x)  # type: ignore[attr-defined]
    torch.abs = lambda t: T(np.abs(t.a))  # type: ignore[attr-defined]
    torch.arange = lambda s, e, st, dtype=None: T(np.arange(s, e, st, dtype=np.float64).astype(np.float32))  # type: ignore[attr-defined]
    torch.__version__ = "numpy-float32-standin"  # type: ignore[attr-defined]
    sys.modules["torch"] = torch
    NOTES.append("torch could not be imported: MRA ran on a numpy float32 STAND-IN, not torch")


def load_references(vilasr: Path, vilavt: Path):
    try:
        import torch  # noqa: F401
    except ImportError:
        install_torch_standin()
    sr_gcot = load_file("vilasr_ref_gcot", vilasr / "verl/utils/reward_score/gcot.py")
    edit_image = load_file("vilasr_ref_edit_image", vilasr / "utils/edit_image.py")
    try:
        import qwen_vl_utils  # noqa: F401
    except ImportError:
        stub = types.ModuleType("qwen_vl_utils")

        def fetch_image(*_a, **_k):
            raise NotImplementedError("qwen_vl_utils stub (not used by the reward)")

        stub.fetch_image = fetch_image  # type: ignore[attr-defined]
        sys.modules["qwen_vl_utils"] = stub
        NOTES.append("qwen_vl_utils not installed: a stub provides fetch_image (unused by parse_dialogue / the reward)")
    namespace_package("vilavt_ref", vilavt / "verl")
    namespace_package("vilavt_ref.utils", vilavt / "verl/utils")
    namespace_package("vilavt_ref.utils.reward_score", vilavt / "verl/utils/reward_score")
    load_file("vilavt_ref.utils.vilavt_utils", vilavt / "verl/utils/vilavt_utils.py")
    vt_gcot = load_file("vilavt_ref.utils.reward_score.gcot", vilavt / "verl/utils/reward_score/gcot.py")
    return sr_gcot, vt_gcot, edit_image


@contextlib.contextmanager
def quiet():
    """Send the references' per-call prints to /dev/null."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def best_of(runs: int, f) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def score_all(gcot, items, with_reflection: bool):
    out = []
    for it in items:
        try:
            r = gcot.gcot_compute_score(it["sequence"], it["ground_truth"], it["question_type"], it["data_type"])
            row = [r["overall"], r["format"], r["accuracy"]]
            if with_reflection:
                row.append(r["reflection"])
            out.append(row)
        except Exception:  # the reference raising (its reward worker would crash)
            out.append(None)
    return out


def execute_response(ei, response, images, boxes, lines):
    """The executor core of ViLaSR ``process_single_response`` (eval): parse, group by ``index``
    (deep-copied items, boxes then lines), merge per group, copy the base image, draw."""
    new_boxes, new_lines = ei.parse_bbox_and_movement(response)
    current = len(images)
    groups: dict = {}
    for b in new_boxes:
        b = copy.deepcopy(b)
        groups.setdefault(b["index"], {"bbox_list": [], "movement_list": []})["bbox_list"].append(b)
    for m in new_lines:
        m = copy.deepcopy(m)
        groups.setdefault(m["index"], {"bbox_list": [], "movement_list": []})["movement_list"].append(m)
    out = []
    for cnt, key in enumerate(groups):
        new = current + cnt
        base, boxes, lines = ei.merge_bbox_movement(
            bbox_list_origin=boxes,
            movement_list_origin=lines,
            bbox_list_new=groups[key]["bbox_list"],
            movement_list_new=groups[key]["movement_list"],
            image_index_new=new,
        )
        if base == -1:
            break
        img = images[base].copy()
        w, h = img.size
        ei.plot_bounding_boxes(img, boxes[new], input_height=h, input_width=w)
        ei.plot_movement(img, lines[new], input_height=h, input_width=w)
        out.append(img)
    return out


def render_all(ei, steps, inputs, sink=None):
    errors = 0
    for si, step in enumerate(steps):
        images = [inputs[step["input"]]]
        boxes, lines = {0: []}, {0: []}
        for ri, resp in enumerate(step["responses"]):
            try:
                new = execute_response(ei, resp, images, boxes, lines)
            except Exception:
                errors += 1
                continue
            if sink is not None:
                for im in new:
                    sink(si, ri, im)
            images.extend(new)
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vilasr-repo", type=Path, required=True, help="ViLaSR checkout")
    ap.add_argument("--vilavt-repo", type=Path, required=True, help="ViLaVT checkout")
    ap.add_argument("--corpus", type=Path, default=Path("target/bench-corpus"), help="corpus written by the Rust bench")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per workload (best is kept)")
    args = ap.parse_args()

    sr_gcot, vt_gcot, ei = load_references(args.vilasr_repo.resolve(), args.vilavt_repo.resolve())
    import PIL
    from PIL import Image, features

    torch_version = getattr(sys.modules["torch"], "__version__", "?")
    versions = {
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "freetype": features.version("freetype2") or "none",
        "torch": torch_version,
        "numpy": version("numpy"),
        "rouge_score": version("rouge_score"),
        "math_verify": version("math-verify"),
    }
    print("reference side: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for n in NOTES:
        print(f"NOTE: {n}")

    corpus = args.corpus
    sr = json.loads((corpus / "vilasr_rl.json").read_text())["items"]
    vt = json.loads((corpus / "vilavt_rl.json").read_text())["items"]
    render = json.loads((corpus / "render.json").read_text())
    inputs = []
    for name in render["inputs"]:
        with Image.open(corpus / name) as im:
            inputs.append(im.convert("RGB"))
    steps = render["steps"]
    n_resp = sum(len(s["responses"]) for s in steps)
    print(f"corpus: {len(sr)} ViLaSR sequences, {len(vt)} ViLaVT sequences, {len(steps)} render steps / {n_resp} responses")

    # --- cross-check against the Rust outputs (untimed) ---
    rust_out_path = corpus / "rust_outputs.json"
    with quiet():
        sr_out = score_all(sr_gcot, sr, True)
        vt_out = score_all(vt_gcot, vt, False)
        hashes = [[[] for _ in s["responses"]] for s in steps]
        render_errors = render_all(ei, steps, inputs, lambda si, ri, im: hashes[si][ri].append(hashlib.sha256(im.tobytes()).hexdigest()))
    check = {}
    if rust_out_path.exists():
        rust = json.loads(rust_out_path.read_text())
        same = lambda a, b: sum(1 for x, y in zip(a, b) if x == y)  # noqa: E731
        check = {
            "vilasr_rl_same": same(sr_out, rust["vilasr_rl"]),
            "vilavt_rl_same": same(vt_out, rust["vilavt_rl"]),
            "render_same": sum(
                1 for a, b in zip((h for s in hashes for r in s for h in r), (h for s in rust["render_sha256"] for r in s for h in r)) if a == b
            ),
            "render_observations": sum(len(r) for s in hashes for r in s),
            "render_observations_rust": sum(len(r) for s in rust["render_sha256"] for r in s),
        }
        print(
            f"cross-check vs Rust: ViLaSR scores {check['vilasr_rl_same']}/{len(sr)} identical, "
            f"ViLaVT scores {check['vilavt_rl_same']}/{len(vt)} identical, "
            f"observations {check['render_same']}/{check['render_observations']} pixel-identical "
            f"(Rust drew {check['render_observations_rust']}); reference raised on {render_errors} responses"
        )
        if check["vilasr_rl_same"] < len(sr) or check["vilavt_rl_same"] < len(vt):
            bad = [i for i, (x, y) in enumerate(zip(sr_out, rust["vilasr_rl"])) if x != y][:5]
            badvt = [i for i, (x, y) in enumerate(zip(vt_out, rust["vilavt_rl"])) if x != y][:5]
            print(f"  first differing ViLaSR items: {[(i, sr_out[i], rust['vilasr_rl'][i]) for i in bad]}")
            print(f"  first differing ViLaVT items: {[(i, vt_out[i], rust['vilavt_rl'][i]) for i in badvt]}")

    # --- timing ---
    with quiet():
        t_sr = best_of(args.runs, lambda: score_all(sr_gcot, sr, True))
        t_vt = best_of(args.runs, lambda: score_all(vt_gcot, vt, False))
        t_render = best_of(args.runs, lambda: render_all(ei, steps, inputs))
        t_sr_parse = best_of(args.runs, lambda: [sr_gcot.parse_dialog(i["sequence"]) for i in sr])
        t_render_parse = best_of(args.runs, lambda: [ei.parse_bbox_and_movement(r) for s in steps for r in s["responses"]])

    rows = [
        ("vilasr_rl_score", "ViLaSR RL scoring", "conversations", len(sr), t_sr),
        ("vilavt_rl_score", "ViLaVT RL scoring", "conversations", len(vt), t_vt),
        ("render", "Rendering (parse+merge+draw)", "responses", n_resp, t_render),
    ]
    print(f"\nreference, single-threaded, best of {args.runs} runs")
    print(f"{'workload':<30} {'items':>8} {'unit':<14} {'best (ms)':>12} {'items/s':>14}")
    for _, name, unit, n, t in rows:
        print(f"{name:<30} {n:>8} {unit:<14} {t * 1e3:>12.2f} {n / t:>14.0f}")
    print(f"  sub-step: ViLaSR parse_dialog only      {len(sr) / t_sr_parse:>10.0f} conversations/s")
    print(f"  sub-step: parse_bbox_and_movement only  {n_resp / t_render_parse:>10.0f} responses/s")

    results = {
        "side": "reference",
        "versions": versions,
        "notes": NOTES,
        "runs": args.runs,
        "cross_check": check,
        "results": [
            {"key": k, "name": name, "unit": unit, "items": n, "best_s": t, "items_per_s": n / t} for k, name, unit, n, t in rows
        ],
        "sub_steps": {"vilasr_parse_dialog_per_s": len(sr) / t_sr_parse, "render_action_parse_per_s": n_resp / t_render_parse},
    }
    (corpus / "reference_results.json").write_text(json.dumps(results, indent=1))

    # --- side by side ---
    rust_res_path = corpus / "rust_results.json"
    if rust_res_path.exists():
        rust = {r["key"]: r for r in json.loads(rust_res_path.read_text())["results"]}
        goals = {"vilasr_rl_score": 50.0, "vilavt_rl_score": 50.0, "render": 10.0}
        print("\nside by side (items/s, single-threaded, best of runs)")
        print(f"{'workload':<30} {'Rust':>12} {'reference':>12} {'speed-up':>10} {'goal':>6}  met")
        for k, name, _, n, t in rows:
            if k not in rust:
                continue
            r, p = rust[k]["items_per_s"], n / t
            print(f"{name:<30} {r:>12.0f} {p:>12.0f} {r / p:>9.1f}x {goals[k]:>5.0f}x  {'yes' if r / p >= goals[k] else 'NO'}")
        rs = json.loads(rust_res_path.read_text()).get("sub_steps", {})
        if rs:
            print(
                f"  sub-steps: parse_dialog {rs['vilasr_parse_dialog_per_s'] / (len(sr) / t_sr_parse):.1f}x, "
                f"action parsing {rs['render_action_parse_per_s'] / (n_resp / t_render_parse):.1f}x"
            )
    for n in NOTES:
        print(f"NOTE: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
