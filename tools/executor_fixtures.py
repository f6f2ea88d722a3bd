#!/usr/bin/env python3
"""Generate differential fixtures for `sightline::core::executor` / `session`.

Developer tool, not run by CI.  It drives the ViLaSR reference executor
(`process_single_response`, in both variants: `eval/infer.py` and the RL
rollout `verl/workers/rollout/vllm_rollout/vllm_rollout_spmd_video.py`) over a
few hundred seeded cases and records, turn by turn, what it did.  The Rust test
`tests/executor_parity.rs` replays the same cases through `VilasrSession` and
`execute_response` and asserts identical outcomes and image hashes.

Nothing from the reference is vendored here.  The user points the script at a
ViLaSR checkout (or a directory holding at least `eval/infer.py`,
`utils/edit_image.py`, `verl/utils/edit_image_video.py` and
`verl/workers/rollout/vllm_rollout/vllm_rollout_spmd_video.py`):

* the drawing/merging modules (`utils/edit_image.py`,
  `verl/utils/edit_image_video.py`) only need Pillow and are imported by path;
* both rollout files import vllm/torch/transformers at module top (the RL one
  also uses package-relative imports), so `MAX_IMAGES`, `ProcessData`,
  `process_single_response` and the loop's nested `_is_finished` are pulled out
  of each file with `ast` at run time and executed in a namespace that supplies
  the names they use (the matching `edit_image*` functions, `copy`, `PIL.Image`,
  a silent `traceback` stub and a silent `print`).

The rollout loop itself (scheduling, counters, answer check, image cap and the
intermediate/final prompt choice) needs a vLLM engine, so it is mirrored here
for a single sample, line by line from the two files (see `drive`).  The RL
token budget (`max_tokens`) needs the tokenizer and is not simulated: every
response here is short and the budget is never reached.

Setup (Pillow must be exactly 12.3.0: label glyphs are FreeType renderings):

    python3 -m venv /tmp/exvenv
    /tmp/exvenv/bin/pip install pillow==12.3.0
    mkdir -p /tmp/vilasr && git -C <ViLaSR clone> archive HEAD eval utils \\
        verl/utils verl/workers/rollout | tar -x -C /tmp/vilasr
    /tmp/exvenv/bin/python tools/executor_fixtures.py --vilasr-repo /tmp/vilasr

Output: `tests/fixtures/executor_cases.json` (deterministic; re-running with
the same reference files and Pillow gives an identical file).  Format:

    {"header": {...versions, reference file hashes, constants...},
     "cases": [{"id", "tag", "steps", "images": [[w, h, r, g, b(, a, b2, c)]],
                "responses": [str], "length": [response numbers finishing
                with "length" instead of "stop"], "maze": true (only when set),
                "eval": RUN, "rl": RUN | "eval" (the same run as eval)}]}
    RUN  = {"turns": [TURN], "end": "stopped" | "exhausted"}
    TURN = {"k": "obs", "b": [raw processed_image_idx], "img": [[sha256, w, h]],
            "kept": n, "final": bool}
         | {"k": "terminal", "r": finish_reason} | {"k": "none"}
         | {"k": "answer", "r": gen_finish} | {"k": "last", "r": gen_finish}

Not covered on purpose: box/line coordinates whose pixel position falls outside
the C `int` range (|v| >= 2**31).  Pillow then casts the double to `int`
(x86-64 gives INT_MIN) and draws with overflowing 32-bit arithmetic, which is
undefined behaviour in C; Sightline's executor saturates and its drawing code
works in 64 bits, so those pixels differ (outcome kinds still agree).

`--out PATH` writes elsewhere; a developer probing other inputs can import this
module, set `CASES_HOOK` and call `main()`, then replay the file with
`SIGHTLINE_EXECUTOR_CASES=PATH cargo test --no-default-features --test executor_parity`.

An input image spec `[w, h, r, g, b]` is a solid colour; with three more
numbers `[a, b2, c]` pixel (x, y) is
`((r + a*x) % 256, (g + b2*y) % 256, (b + c*(x + y)) % 256)`.
`sha256` is over the image's raw RGB bytes (`Image.tobytes()`).
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib.util
import json
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import PIL
from PIL import Image

REQUIRED_PILLOW = "12.3.0"
EVAL_FILE = "eval/infer.py"
EVAL_EDIT = "utils/edit_image.py"
RL_FILE = "verl/workers/rollout/vllm_rollout/vllm_rollout_spmd_video.py"
RL_EDIT = "verl/utils/edit_image_video.py"


# --------------------------------------------------------------------------
# Loading the reference from the user's checkout
# --------------------------------------------------------------------------

def _quiet_print(*_args, **_kwargs):
    pass


_QUIET_TRACEBACK = types.SimpleNamespace(print_exc=lambda *a, **k: None)


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.print = _quiet_print  # module-level print lookups hit the module globals first
    return mod


def _extract(path: Path, names: set[str], nested: set[str] = frozenset()) -> ast.Module:
    """The top-level statements of `path` that define one of `names`, plus the (first) function
    definition named in `nested` found anywhere in the file (the rollout loops define their
    `_is_finished` inside the loop function), lifted to module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            body.append(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in names for t in node.targets
        ):
            body.append(node)
    for name in nested:
        fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name), None)
        if fn is not None:
            body.append(fn)
    names = names | nested
    found = {getattr(n, "name", None) or n.targets[0].id for n in body}
    missing = names - found
    if missing:
        sys.exit(f"{path}: could not find {sorted(missing)}")
    return ast.Module(body=body, type_ignores=[])


def load_reference(repo: Path, rollout_file: str, edit_file: str, tag: str):
    edit = _load_module(repo / edit_file, f"_vilasr_{tag}_edit")
    # A real module object (dataclasses looks the class's module up in sys.modules).
    mod = types.ModuleType(f"_vilasr_{tag}_rollout")
    sys.modules[mod.__name__] = mod
    ns: Dict[str, Any] = mod.__dict__
    ns.update({
        "copy": copy,
        "traceback": _QUIET_TRACEBACK,
        "print": _quiet_print,
        "Image": Image,
        "dataclass": dataclass,
        "Dict": Dict,
        "List": List,
        "Any": Any,
        "merge_bbox_movement": edit.merge_bbox_movement,
        "parse_bbox_and_movement": edit.parse_bbox_and_movement,
        "plot_movement": edit.plot_movement,
        "plot_bounding_boxes": edit.plot_bounding_boxes,
    })
    module = _extract(repo / rollout_file, {"MAX_IMAGES", "ProcessData", "process_single_response"},
                      nested={"_is_finished"})
    exec(compile(module, str(repo / rollout_file), "exec"), ns)
    return ns


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

def build_image(spec: List[int]) -> Image.Image:
    w, h, r, g, b = spec[:5]
    if len(spec) == 5:
        return Image.new("RGB", (w, h), (r, g, b))
    a, b2, c = spec[5:]
    data = bytearray()
    for y in range(h):
        for x in range(w):
            data += bytes(((r + a * x) % 256, (g + b2 * y) % 256, (b + c * (x + y)) % 256))
    return Image.frombytes("RGB", (w, h), bytes(data))


def image_hash(im: Image.Image) -> List[Any]:
    assert im.mode == "RGB"
    return [hashlib.sha256(im.tobytes()).hexdigest(), im.size[0], im.size[1]]


# --------------------------------------------------------------------------
# The rollout loop for one sample (mirrors both reference files)
# --------------------------------------------------------------------------

def drive(ref, profile: str, specs, responses, length_at, steps, maze=False):
    """Run one sample through the reference executor, as the rollout loop does.

    `steps` is eval's `max_num_steps` / RL's `num_llm_calls_available`; `maze` gives the sample a
    grid size (RL: +10 calls on the per-sample counter only; eval: nothing beyond `steps`).
    Responses are consumed one per generation; a `None` result regenerates the turn with
    the next scripted response (the state mutations it made persist, as in the reference).
    """
    max_images = ref["MAX_IMAGES"]
    ProcessData = ref["ProcessData"]
    images = [build_image(s) for s in specs]
    info = {
        "stop": False,
        "bbox_list": {i: [] for i in range(len(images))},
        "movement_list": {i: [] for i in range(len(images))},
    }
    counter = steps - 1  # eval: the shared loop counter; RL: this sample's counter
    if profile == "rl" and maze:
        counter += 10
    rl_single = steps - 1  # RL: `num_llm_calls_available`, never decremented
    turns = []
    queue = list(enumerate(responses))
    while counter >= 0:
        # _get_prompts_and_indices: only unstopped samples with <= MAX_IMAGES images run;
        # with a single sample an empty round ends the loop either way.
        if info["stop"] or len(images) > max_images:
            return {"turns": turns, "end": "stopped"}
        counter -= 1
        if not queue:
            return {"turns": turns, "end": "exhausted"}
        n, response = queue.pop(0)
        gen_finish = "length" if n in length_at else "stop"
        if counter == -1:  # last generation: appended unexecuted
            turns.append({"k": "last", "r": gen_finish})
            return {"turns": turns, "end": "stopped"}
        finished = ref["_is_finished"](gen_finish, None, response)
        if finished:  # all (one) samples finished
            turns.append({"k": "answer", "r": gen_finish})
            return {"turns": turns, "end": "stopped"}
        kwargs = dict(
            index=0,
            response=response,
            mm_data={"image": images},
            bbox_list_origin=info["bbox_list"],
            movement_list_origin=info["movement_list"],
            finish_reason=gen_finish,
            is_finished=finished,
            grid_size=5 if maze else None,
        )
        if profile == "rl":
            kwargs["response_ids"] = []
        result = ref["process_single_response"](ProcessData(**kwargs))
        if result is None:
            turns.append({"k": "none"})
            continue
        info["stop"] = result["is_finished"]
        if result["is_finished"]:
            turns.append({"k": "terminal", "r": result["finish_reason"]})
            continue
        new = result["image"]
        before = len(images)
        kept, final = 0, False
        if len(new) > 1:
            multi_ok = counter > 0  # eval: loop counter; RL: per-sample counter
            for j, im in enumerate(new):
                kept += 1
                if before + j + 1 >= max_images:
                    final = True
                    break
                final = j == len(new) - 1 and not multi_ok
        else:
            single_ok = counter > 0 if profile == "eval" else rl_single > 0
            final = before + 1 >= max_images or not single_ok
            kept = 1
        turns.append({
            "k": "obs",
            "b": list(result["processed_image_idx"]),
            "img": [image_hash(im) for im in new],
            "kept": kept,
            "final": final,
        })
        images.extend(new[:kept])
        info["bbox_list"] = result["bbox_list"]
        info["movement_list"] = result["movement_list"]
    return {"turns": turns, "end": "stopped"}


# --------------------------------------------------------------------------
# Response text
# --------------------------------------------------------------------------

class Raw(str):
    """Emitted verbatim inside a literal."""


def lit(v, sq=False) -> str:
    """Python-literal text for `v`; strings in double quotes (single with `sq`)."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, (bool, bytes)) or v is None:
        return repr(v)
    if isinstance(v, str):
        if sq:
            return repr(v) if "'" not in v else json.dumps(v)
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, tuple):
        inner = ", ".join(lit(x, sq) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(lit(x, sq) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{lit(k, sq)}: {lit(x, sq)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


MISSING = object()


def box(index, bbox, label, **extra):
    d = {}
    if index is not MISSING:
        d["index"] = index
    d["bbox_2d"] = bbox
    if label is not MISSING:
        d["label"] = label
    d.update(extra)
    return d


def line(index, start, end, label="path"):
    d = {}
    if index is not MISSING:
        d["index"] = index
    d["start_point_2d"] = start
    d["end_point_2d"] = end
    d["label"] = label
    return d


def block(items, sq=False, multiline=False) -> str:
    if multiline:
        body = "[\n" + ",\n".join("    " + lit(i, sq) for i in items) + "\n]"
    else:
        body = lit(items, sq)
    return body


def tool(items, rng=None, action=None, sq=False, raw_block=None, think="look") -> str:
    if action is None:
        kinds = {"bbox_2d" in i if isinstance(i, dict) else True for i in items}
        action = "Object Mapper" if kinds == {True} else "Path Tracer"
    body = raw_block if raw_block is not None else block(items, sq, multiline=bool(rng and rng.random() < 0.15))
    if rng is not None and rng.random() < 0.7:  # the executor ignores the preamble; keep it short
        return f"<think>.</think>\n```json\n{body}\n```"
    return f"<think> {think} </think> Action: {action}\n```json\n{body}\n```"


ANSWER = "<think> I can answer now. </think> Action: Answer\n<answer> B </answer>"

LABELS = ["chair", "table", "sofa", "lamp", "door", "window", "bed", "tv", "plant", "rug",
          "Chair", "shelf", "start", "goal", "cup", "book", "desk light", "picture frame"]


# --------------------------------------------------------------------------
# Case generators
# --------------------------------------------------------------------------

class Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.cases = []

    # ---- inputs ----
    def image_spec(self, w=None, h=None, pattern=None):
        r = self.rng
        w = w or r.choice([56, 84, 112])
        h = h or r.choice([56, 84])
        col = [r.randrange(256) for _ in range(3)]
        if r.random() < 0.3:
            g = r.randrange(60, 200)
            col = [g, g, g]
        pattern = r.random() < 0.2 if pattern is None else pattern
        if pattern:
            return [w, h] + col + [r.randrange(1, 9), r.randrange(1, 9), r.randrange(1, 5)]
        return [w, h] + col

    def inputs(self, n=None):
        n = n or self.rng.randint(1, 3)
        return [self.image_spec() for _ in range(n)]

    # ---- coordinates ----
    def pt(self, spec, margin=0, floats=False):
        r = self.rng
        w, h = spec[0], spec[1]
        x, y = r.randint(-margin, w - 1 + margin), r.randint(-margin, h - 1 + margin)
        if floats and r.random() < 0.5:
            return [x + round(r.random(), 2), y + round(r.random(), 2)]
        return [x, y]

    def bbox(self, spec, margin=0, floats=False):
        a, b = self.pt(spec, margin, floats), self.pt(spec, margin, floats)
        if self.rng.random() < 0.8:  # mostly well-ordered
            return [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])]
        return a + b

    def label(self):
        return self.rng.choice(LABELS)

    def add(self, tag, specs, responses, steps=10, length=(), maze=False):
        self.cases.append({"tag": tag, "steps": steps, "images": specs,
                           "responses": responses, "length": sorted(length), "maze": maze})


def gen_cases(seed: int):
    g = Gen(seed)
    r = g.rng

    # -- plain boxes / lines / mixed on inputs, chained onto observations -----------------
    for _ in range(22):
        specs = g.inputs()
        sizes = [(s[0], s[1]) for s in specs]
        nresp = r.randint(1, 4)
        responses = []
        for _t in range(nresp):
            kind = r.choice(["box", "box", "line", "mixed", "multi"])
            n_imgs = len(sizes)
            if kind == "multi" and n_imgs >= 2:
                idxs = r.sample(range(1, n_imgs + 1), r.randint(2, min(3, n_imgs)))
            else:
                idxs = [r.randint(1, n_imgs)]
            items_b, items_l = [], []
            for idx in idxs:
                spec = list(sizes[idx - 1])
                if kind in ("box", "mixed", "multi"):
                    for _k in range(r.randint(1, 3)):
                        items_b.append(box(idx, g.bbox(spec, floats=r.random() < 0.2), g.label()))
                if kind in ("line", "mixed") or (kind == "multi" and r.random() < 0.4):
                    for _k in range(r.randint(1, 2)):
                        items_l.append(line(idx, g.pt(spec, floats=r.random() < 0.2), g.pt(spec), r.choice(["path", "route", "p2"])))
            items = items_b + items_l
            if r.random() < 0.3:
                r.shuffle(items)
            responses.append(tool(items, r, sq=r.random() < 0.2))
            # Next turn may reference the new observations: they copy their base sizes.
            groups = list(dict.fromkeys([i["index"] for i in items_b] + [i["index"] for i in items_l]))
            sizes.extend(sizes[i - 1] for i in groups)
        if r.random() < 0.3:
            responses.append(ANSWER)
        g.add("plain", specs, responses, steps=r.choice([10, 10, 10, 3, 2]))

    # -- re-labelling on observations, duplicate labels, carried-over lines ---------------
    for _ in range(18):
        specs = g.inputs(r.randint(1, 2))
        spec = specs[0]
        labs = r.sample(LABELS[:10], 3)
        t1 = [box(1, g.bbox(spec), labs[0]), box(1, g.bbox(spec), labs[1])]
        if r.random() < 0.5:
            t1.append(line(1, g.pt(spec), g.pt(spec), "walk"))
        obs = len(specs) + 1
        t2 = [box(obs, g.bbox(spec), labs[1]), box(obs, g.bbox(spec), labs[2]), box(obs, g.bbox(spec), labs[0])]
        if r.random() < 0.5:  # duplicate label inside one response: last value, first position
            t2.append(box(obs, g.bbox(spec), labs[2]))
        r.shuffle(t2)
        t3 = [line(obs + 1, g.pt(spec), g.pt(spec), r.choice(["walk", "new"]))]
        if r.random() < 0.5:
            t3.append(box(obs + 1, g.bbox(spec), labs[0]))
        responses = [tool(t1, r), tool(t2, r), tool(t3, r)]
        if r.random() < 0.4:
            responses.append(tool([box(r.choice([1, obs, obs + 1, obs + 2]), g.bbox(spec), r.choice(labs))], r))
        g.add("relabel", specs, responses)

    for _ in range(6):  # lines first, then boxes only: lines carried over
        specs = g.inputs(1)
        spec = specs[0]
        responses = [tool([line(1, g.pt(spec), g.pt(spec), "a"), line(1, g.pt(spec), g.pt(spec), "b")], r),
                     tool([box(2, g.bbox(spec), "x")], r),
                     tool([line(3, g.pt(spec), g.pt(spec), "a")], r)]
        g.add("carry", specs, responses)

    # -- index edge cases ------------------------------------------------------------------
    def one_turn(tag, items_fn, n=12, prefix_valid=0.5, suffix=True, raw=None, **kw):
        for _ in range(n):
            specs = g.inputs()
            spec = specs[0]
            responses = []
            if r.random() < prefix_valid:
                responses.append(tool([box(1, g.bbox(spec), g.label())], r))
            items = items_fn(specs, spec)
            responses.append(raw(items) if raw else tool(items, r, **kw))
            if suffix:
                responses.append(tool([box(1, g.bbox(spec), g.label())], r))
            g.add(tag, specs, responses)

    one_turn("missing_index_first", lambda s, sp: [box(MISSING, g.bbox(sp), "a"), box(1, g.bbox(sp), "b")])
    one_turn("missing_index_line_first", lambda s, sp: [line(MISSING, g.pt(sp), g.pt(sp)), box(1, g.bbox(sp), "b")], n=4)
    one_turn("missing_index_later", lambda s, sp: [box(1, g.bbox(sp), "a"), box(MISSING, g.bbox(sp), "b")])
    one_turn("missing_index_later_line", lambda s, sp: [box(1, g.bbox(sp), "a"), line(MISSING, g.pt(sp), g.pt(sp))], n=6)
    one_turn("index_zero_box", lambda s, sp: [box(0, g.bbox(sp), "a")], n=6)
    one_turn("index_zero_line", lambda s, sp: [line(0, g.pt(sp), g.pt(sp))], n=4)
    one_turn("index_zero_both", lambda s, sp: [box(0, g.bbox(sp), "a"), line(0, g.pt(sp), g.pt(sp))], n=4)
    one_turn("index_zero_after_valid", lambda s, sp: [box(1, g.bbox(sp), "a"), box(0, g.bbox(sp), "b")], n=6)
    for neg in (-1, -2, -3):
        one_turn(f"neg{neg}_box", lambda s, sp, neg=neg: [box(neg, g.bbox(sp), "a")], n=4)
        one_turn(f"neg{neg}_line", lambda s, sp, neg=neg: [line(neg, g.pt(sp), g.pt(sp))], n=3)
        one_turn(f"neg{neg}_both", lambda s, sp, neg=neg: [box(neg, g.bbox(sp), "a"), line(neg, g.pt(sp), g.pt(sp))], n=8)
    one_turn("neg_both_after_obs", lambda s, sp: [box(-1, g.bbox(sp), "n"), line(-1, g.pt(sp), g.pt(sp))], n=6, prefix_valid=1.0)
    one_turn("float_index_1", lambda s, sp: [box(1.0, g.bbox(sp), "a")], n=4)
    one_turn("float_index_mixed", lambda s, sp: [box(1, g.bbox(sp), "a"), box(1.0, g.bbox(sp), "b"), box(True, g.bbox(sp), "c")], n=4)
    one_turn("float_index_0", lambda s, sp: [box(0.0, g.bbox(sp), "a")], n=3)
    one_turn("float_index_0_line", lambda s, sp: [line(0.0, g.pt(sp), g.pt(sp))], n=3)
    one_turn("float_index_2", lambda s, sp: [line(2.0, g.pt(sp), g.pt(sp))], n=3, prefix_valid=1.0)
    one_turn("float_index_frac", lambda s, sp: [box(1.5, g.bbox(sp), "a")], n=3)
    one_turn("float_neg_both", lambda s, sp: [box(-1.0, g.bbox(sp), "a"), line(-1.0, g.pt(sp), g.pt(sp))], n=3)
    one_turn("bool_index", lambda s, sp: [box(True, g.bbox(sp), "a"), line(False, g.pt(sp), g.pt(sp))], n=3)
    one_turn("str_index", lambda s, sp: [box("1", g.bbox(sp), "a")], n=3)
    one_turn("none_index", lambda s, sp: [box(None, g.bbox(sp), "a")], n=2)
    one_turn("list_index", lambda s, sp: [box([1], g.bbox(sp), "a")], n=2)
    one_turn("list_index_later", lambda s, sp: [box(1, g.bbox(sp), "a"), box([1], g.bbox(sp), "b")], n=2)
    one_turn("tuple_index", lambda s, sp: [box((1,), g.bbox(sp), "a")], n=2)
    one_turn("oob_box", lambda s, sp: [box(len(s) + r.choice([1, 2, 5]), g.bbox(sp), "a")], n=8)
    one_turn("oob_line", lambda s, sp: [line(len(s) + r.choice([1, 3]), g.pt(sp), g.pt(sp))], n=6)
    one_turn("oob_both", lambda s, sp: [box(len(s) + 2, g.bbox(sp), "a"), line(len(s) + 2, g.pt(sp), g.pt(sp))], n=4)
    one_turn("oob_after_valid", lambda s, sp: [box(1, g.bbox(sp), "a"), line(len(s) + 4, g.pt(sp), g.pt(sp))], n=6)
    one_turn("oob_neg_both", lambda s, sp: [box(-9, g.bbox(sp), "a"), line(-9, g.pt(sp), g.pt(sp))], n=3)
    one_turn("big_index", lambda s, sp: [box(10**30, g.bbox(sp), "a")], n=2)

    # -- geometry edge cases ----------------------------------------------------------------
    one_turn("short_points", lambda s, sp: [line(1, r.choice([[5], [], [3, 4, 5]]), g.pt(sp))], n=8)
    one_turn("short_end", lambda s, sp: [line(1, g.pt(sp), [7])], n=4)
    one_turn("str_point", lambda s, sp: [line(1, r.choice(["12", "34", "1"]), g.pt(sp))], n=6)
    one_turn("str_coords", lambda s, sp: [line(1, [str(g.pt(sp)[0]), " 7 "], ["1_0", g.pt(sp)[1]])], n=4)
    one_turn("str_coords_unicode", lambda s, sp: [line(1, [r.choice(["\uff11\uff12", "\u0661\u0662", "\u00b2", "+5", "1__0"]), 4], g.pt(sp))], n=5)
    one_turn("str_coords_box", lambda s, sp: [box(1, ["12", 3, 30, 40], "a")], n=4)
    one_turn("str_bbox4", lambda s, sp: [box(1, "1234", "a")], n=2)
    one_turn("bbox_len3", lambda s, sp: [box(1, [1, 2, 3], "a"), box(1, g.bbox(sp), "b")], n=4)
    one_turn("bbox_len5", lambda s, sp: [box(1, g.bbox(sp) + [9], "a"), box(1, g.bbox(sp), "b")], n=3)
    one_turn("bbox_int", lambda s, sp: [box(1, 5, "a")], n=2)
    one_turn("bbox_tuple", lambda s, sp: [box(1, tuple(g.bbox(sp)), "a")], n=3)
    one_turn("nonnum_box", lambda s, sp: [box(1, [r.choice(["abc", None, [1], "1.5"]), 2, 30, 40], "a")], n=8)
    one_turn("nonnum_line", lambda s, sp: [line(1, [r.choice(["abc", None, "", "1.5"]), 3], g.pt(sp))], n=8)
    one_turn("float_line", lambda s, sp: [line(1, [10.9, -3.2], [r.uniform(-5, 60), r.uniform(-5, 60)])], n=4)
    one_turn("nonstr_label", lambda s, sp: [box(1, g.bbox(sp), r.choice([5, None, True, 1.5, ("a",)]))], n=10)
    one_turn("list_label", lambda s, sp: [box(1, g.bbox(sp), ["a"])], n=2)
    one_turn("nonstr_label_line", lambda s, sp: [line(1, g.pt(sp), g.pt(sp), r.choice([5, None]))], n=4)
    one_turn("bytes_label", lambda s, sp: [box(1, g.bbox(sp), r.choice([b"ab", b"x\xe9"]))], n=2)
    one_turn("odd_label", lambda s, sp: [box(1, g.bbox(sp), r.choice(["", "a\nb", "caf\u00e9", "\u4e2d\u6587", "x" * 40, "  spaced  ",
                                                                     "\U0001F642", "a\rb", "e\u0301", "\t"]))], n=12)
    one_turn("tiny_box", lambda s, sp: [box(1, r.choice([[5, 5, 5, 5], [5, 5, 6, 7], [10, 3, 10, 40], [0, 0, 1, 1], [40, 30, 20, 10]]), "t")], n=8)
    one_turn("offimage_box", lambda s, sp: [box(1, g.bbox(sp, margin=60, floats=True), "o") for _ in range(r.randint(1, 3))], n=10)
    one_turn("negative_box", lambda s, sp: [box(1, [-30, -20, -5, -1], "n"), box(1, [-5, -5, 20, 20], "m")], n=3)
    one_turn("offimage_line", lambda s, sp: [line(1, g.pt(sp, margin=40), g.pt(sp, margin=40))], n=6)
    one_turn("point_none", lambda s, sp: [line(1, None, g.pt(sp)), line(1, g.pt(sp), g.pt(sp), "b")], n=3)
    one_turn("point_dict", lambda s, sp: [line(1, {0: 5, 1: 6}, g.pt(sp))], n=2)
    one_turn("many_boxes", lambda s, sp: [box(1, g.bbox(sp), f"o{k}") for k in range(r.randint(24, 32))], n=3, prefix_valid=0.0)

    # -- parsing edge cases -----------------------------------------------------------------
    def raw_turn(tag, fn, n=4, prefix_valid=0.5, suffix=True):
        one_turn(tag, lambda s, sp: (s, sp), n=n, prefix_valid=prefix_valid, suffix=suffix,
                 raw=lambda a: fn(*a))

    raw_turn("json_true", lambda s, sp: tool([], raw_block=f'[{{"index": 1, "bbox_2d": {g.bbox(sp)}, "label": "a", "ok": true}}]'))
    raw_turn("json_null_plus_valid", lambda s, sp: tool([], raw_block=f'[{{"index": 1, "bbox_2d": null, "label": "a"}}]')
             + "\n" + tool([box(1, g.bbox(sp), "b")]))
    raw_turn("py_comments", lambda s, sp: tool([], raw_block=(
        f"[\n    {{'index': 1,  # image index\n      'bbox_2d': ({', '.join(map(str, g.bbox(sp)))}),\n"
        f"      'label': 'c',}},  # trailing\n    {{'index': True, 'start_point_2d': {tuple(g.pt(sp))}, "
        f"'end_point_2d': {g.pt(sp)}, 'label': 'l'}},\n]")), n=6)
    raw_turn("unterminated_think", lambda s, sp: f"<think> x </think> Action: Object Mapper\n```json\n"
             f"{lit([box(1, g.bbox(sp), 'u')])}\n</think> trailing text", n=4)
    raw_turn("unterminated_eof", lambda s, sp: f"Action: Object Mapper\n```json\n  {lit([box(1, g.bbox(sp), 'u')])}  ", n=3)
    raw_turn("unterminated_junk", lambda s, sp: f"```json\n{lit([box(1, g.bbox(sp), 'u')])}\nmore words </think>", n=2)
    raw_turn("two_blocks", lambda s, sp: tool([box(1, g.bbox(sp), "a")]) + "\nthen\n```json\n"
             + lit([line(1, g.pt(sp), g.pt(sp))]) + "\n```", n=4)
    raw_turn("two_blocks_two_images", lambda s, sp: tool([box(1, g.bbox(sp), "a")]) + "\n```json\n"
             + lit([box(len(s), g.bbox(list(s[-1])), "z")]) + "\n```", n=4)
    raw_turn("dict_block", lambda s, sp: tool([], raw_block=lit(box(1, g.bbox(sp), "a"))), n=3)
    raw_turn("str_block", lambda s, sp: tool([], raw_block='"bbox_2d label"'), n=2)
    raw_turn("str_element_first", lambda s, sp: tool([], raw_block=f'["bbox_2d label", {lit(box(1, g.bbox(sp), "a"))}]'), n=2)
    raw_turn("str_element_later", lambda s, sp: tool([], raw_block=f'[{lit(box(1, g.bbox(sp), "a"))}, "bbox_2d label"]'), n=2)
    raw_turn("int_block", lambda s, sp: tool([], raw_block="5"), n=2)
    raw_turn("int_element", lambda s, sp: tool([], raw_block=f"[1, {lit(box(1, g.bbox(sp), 'a'))}]"), n=2)
    raw_turn("none_block", lambda s, sp: tool([], raw_block="None") + "\n" + tool([box(1, g.bbox(sp), "a")]), n=2)
    raw_turn("dup_keys", lambda s, sp: tool([], raw_block=f'[{{"index": 9, "index": 1, "bbox_2d": {g.bbox(sp)}, "label": "a"}}]'), n=2)
    raw_turn("no_block", lambda s, sp: "<think> I think the answer is B. </think>", n=3)
    raw_turn("answer_unclosed", lambda s, sp: "<think> hmm </think> Action: Answer\n<answer> B", n=2)
    raw_turn("crlf", lambda s, sp: tool([box(1, g.bbox(sp), "a")]).replace("\n", "\r\n"), n=2)
    raw_turn("indented_fence", lambda s, sp: tool([box(1, g.bbox(sp), "a")]).replace("```json", "   ```json  "), n=2)
    raw_turn("fence_inline", lambda s, sp: "Action: Object Mapper ```json\n" + lit([box(1, g.bbox(sp), "a")]) + "\n```", n=2)
    raw_turn("syntax_error", lambda s, sp: tool([], raw_block="[{'index': 1, 'bbox_2d': [1, 2, 3, 4], 'label': 'a'"), n=2)

    # -- regenerate-after-None, answers, length, step limits --------------------------------
    for _ in range(12):
        specs = g.inputs()
        spec = specs[0]
        bad = r.choice([
            tool([box(1, [None, 1, 2, 3], "a")]),
            tool([box(1, g.bbox(spec), 5)]),
            tool([box(len(specs) + 3, g.bbox(spec), "a")]),
            tool([box(1, g.bbox(spec), "ok"), box(2.0, g.bbox(spec), "f")]),
            tool([box(1, g.bbox(spec), "ok"), line(1, g.pt(spec), ["x", 1])]),
        ])
        good = tool([box(1, g.bbox(spec), "ok"), line(1, g.pt(spec), g.pt(spec))])
        responses = [bad, good, tool([box(len(specs) + 1, g.bbox(spec), "ok2")])]
        if r.random() < 0.5:
            responses.append(ANSWER)
        g.add("regenerate", specs, responses, steps=r.choice([10, 3]))

    for _ in range(10):
        specs = g.inputs()
        spec = specs[0]
        responses = [tool([box(1, g.bbox(spec), "a")]) for _ in range(r.randint(1, 3))]
        length = set()
        end = r.choice(["answer", "length", "length_answerless"])
        if end == "answer":
            responses.append(ANSWER)
        elif end == "length":
            responses.append(tool([box(1, g.bbox(spec), "cut")]))
            length.add(len(responses) - 1)
        else:
            responses.append("<think> long reasoning that gets cut")
            length.add(len(responses) - 1)
        responses.append(tool([box(1, g.bbox(spec), "after")]))
        g.add("answer_length", specs, responses, length=length)

    for steps in (1, 2, 3, 4):
        for _ in range(3):
            specs = g.inputs()
            spec = specs[0]
            responses = []
            for t in range(4):
                if r.random() < 0.4 and len(specs) >= 2:
                    responses.append(tool([box(1, g.bbox(spec), "a"), box(2, g.bbox(list(specs[1])), "b")]))
                else:
                    responses.append(tool([box(1, g.bbox(spec), f"s{t}")]))
            g.add(f"steps{steps}", specs, responses, steps=steps)

    # -- maze samples: RL adds 10 calls to the per-sample counter only ----------------------
    for steps in (1, 1, 2, 2, 3, 3):
        specs = [g.image_spec(w=84, h=84), g.image_spec(w=84, h=84)]
        responses = []
        for t in range(4):
            if r.random() < 0.5:
                responses.append(tool([line(1, g.pt(specs[0]), g.pt(specs[0]), f"m{t}")], r))
            else:
                responses.append(tool([line(1, g.pt(specs[0]), g.pt(specs[0]), "m"), box(2, g.bbox(specs[1]), "b")], r))
        g.add("maze", specs, responses, steps=steps, maze=True)

    # -- the image cap: many groups in one response -----------------------------------------
    def cap_case(n_in, extra, steps=10):
        specs = [g.image_spec(pattern=(k == 0)) for k in range(n_in)]
        count = n_in
        responses = []
        while count < 48:
            n_groups = min(count, 48 - count + 3)
            items = []
            for k in range(1, n_groups + 1):
                base = specs[(k - 1) % n_in]  # sizes repeat: observations copy their bases
                if r.random() < 0.7:
                    items.append(box(k, g.bbox(base), r.choice(["a", "b", f"g{k}"])))
                else:
                    items.append(line(k, g.pt(base), g.pt(base), "p"))
            responses.append(tool(items))
            count += n_groups
        responses.extend(extra)
        g.add("cap", specs, responses, steps=steps)

    cap_case(3, [tool([box(46, [1, 1, 20, 20], "late")])])
    cap_case(3, [tool([box(45, [1, 1, 20, 20], "x"), box(44, [2, 2, 30, 30], "y")]), ANSWER])
    cap_case(1, [tool([line(2, [3, 3], [30, 30])])])
    cap_case(2, [tool([box(47, [1, 1, 20, 20], "stale")])])

    # Stable ids.
    for i, c in enumerate(g.cases):
        c["id"] = i
    return g.cases


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

# A developer probing other inputs can import this module, set CASES_HOOK to a function
# `seed -> [case]` (same shape as `gen_cases`) and call `main()` with `--out`.
CASES_HOOK = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vilasr-repo", type=Path, required=True,
                    help="ViLaSR checkout (or a directory with the four reference files)")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="Sightline repository root")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=None,
                    help="output file (default: <root>/tests/fixtures/executor_cases.json)")
    args = ap.parse_args()

    print(f"Python {sys.version.split()[0]}, Pillow {PIL.__version__}")
    if PIL.__version__ != REQUIRED_PILLOW:
        sys.exit(f"refusing to run: Pillow {REQUIRED_PILLOW} is required, found {PIL.__version__}")
    repo = args.vilasr_repo
    for f in (EVAL_FILE, EVAL_EDIT, RL_FILE, RL_EDIT):
        if not (repo / f).is_file():
            sys.exit(f"{repo / f} not found")
    refs = {
        "eval": load_reference(repo, EVAL_FILE, EVAL_EDIT, "eval"),
        "rl": load_reference(repo, RL_FILE, RL_EDIT, "rl"),
    }

    cases = CASES_HOOK(args.seed) if CASES_HOOK else gen_cases(args.seed)
    out_cases = []
    for c in cases:
        row = {"id": c["id"], "tag": c["tag"], "steps": c["steps"], "images": c["images"],
               "responses": c["responses"]}
        if c["length"]:
            row["length"] = c["length"]
        if c.get("maze"):
            row["maze"] = True
        for prof, ref in refs.items():
            row[prof] = drive(ref, prof, c["images"], c["responses"], set(c["length"]), c["steps"], c.get("maze", False))
        # Responses no profile reached (after a terminal turn) are not stored.
        used = max(len(row["eval"]["turns"]), len(row["rl"]["turns"]))
        row["responses"] = row["responses"][:used]
        if "length" in row:
            row["length"] = [n for n in row["length"] if n < used] or None
            if row["length"] is None:
                del row["length"]
        if row["rl"] == row["eval"]:
            row["rl"] = "eval"  # identical run, stored once
        out_cases.append(row)

    header = {
        "generator": "tools/executor_fixtures.py",
        "python": sys.version.split()[0],
        "pillow": PIL.__version__,
        "seed": args.seed,
        "max_images": {"eval": refs["eval"]["MAX_IMAGES"], "rl": refs["rl"]["MAX_IMAGES"]},
        "reference_files": {f: file_sha(repo / f) for f in (EVAL_FILE, EVAL_EDIT, RL_FILE, RL_EDIT)},
        "image_spec": "[w, h, r, g, b] solid; [w, h, r, g, b, a, b2, c]: "
                      "((r + a*x) % 256, (g + b2*y) % 256, (b + c*(x + y)) % 256)",
        "hash": "sha256 of raw RGB bytes",
    }
    out = args.out or args.root / "tests/fixtures/executor_cases.json"
    text = json.dumps({"header": header, "cases": out_cases}, ensure_ascii=False, separators=(",", ":"))
    # One case per line keeps diffs readable.
    text = text.replace(',{"id":', ',\n{"id":')
    out.write_text(text + "\n", encoding="utf-8")

    stats: Dict[str, int] = {}
    for c in out_cases:
        for prof in ("eval", "rl"):
            run = c[c[prof] if isinstance(c[prof], str) else prof]
            for t in run["turns"]:
                key = f"{prof}:{t['k']}" + (f":{t['r']}" if t["k"] == "terminal" else "")
                stats[key] = stats.get(key, 0) + 1
    print(f"{len(out_cases)} cases -> {out} ({len(text) // 1024} KiB)")
    for k in sorted(stats):
        print(f"  {k}: {stats[k]}")


if __name__ == "__main__":
    main()
