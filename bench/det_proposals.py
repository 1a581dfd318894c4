"""The low-proposal setting (``test.proposals``): speed against accuracy on the demo val split, for both designs,
and the peak memory of the paper design's second stage, chunked and unchunked.

Part 1, trade-off: the FPN demo detector (``configs/det/demo.yaml``) and the C4 demo detector
(``configs/det/demo_c4.yaml``) are trained with ``tools/train_det.py`` unless their ``model_final.pth`` is already
there (an interrupted training resumes from its last checkpoint). Each is then rebuilt at every proposal count
with ``test.proposals N`` and run image by image over the 100 val images, eagerly and fused
(``optimize_for_inference``), alternating which goes first: COCO AP/AP50 of both (they must agree), the
proposals that reach the second stage, and the median time per image, wall and CPU (``time.process_time``
of this one-thread process: the steadier figure when other jobs share the cores).

Part 2, memory: for NASNet-A Mobile and Large in the C4 design, untrained, one ``--memory-size`` px image
with 1000 test proposals, second stage in chunks of 64 crops against all at once (chunk 100000), plus the
first stage alone (1 proposal) and the chunked second stage with RPN NMS off (all 1000 proposals reach it; see
``MEMORY_RUNS``). Each runs in its own fresh process (``--memory-child``), which builds the model, then runs one
forward without warm-up and reports ``ru_maxrss`` before and after it (torch's allocations are outside
tracemalloc's view), the forward's time and the second stage's share of it.

    python bench/det_proposals.py                                # both parts, runs/bench/det_proposals.json
    python bench/det_proposals.py --skip-memory --proposals 1000 100
    python bench/det_proposals.py --skip-tradeoff --memory-archs mobile --memory-runs chunked unchunked

Times depend on the machine's load: the load average is recorded with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.configs import config_path
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.data.coco import CocoDetection
from nasnet_zoo.detection.engine.train_loop import FINAL_NAME
from nasnet_zoo.detection.evaluation.coco_evaluation import coco_evaluate, to_coco_results
from nasnet_zoo.detection.modeling.trained import load_detector
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
#: design -> (config, run folder, detector name)
DESIGNS = {
    "fpn": ("demo", "runs/det_demo_fpn", "fasterrcnn_nasnet_a_mobile_fpn"),
    "c4": ("demo_c4", "runs/det_demo_c4", "fasterrcnn_nasnet_a_mobile_c4"),
}
UNCHUNKED = 100_000


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ensure_trained(design: str, threads: int) -> Path:
    """The design's trained weights: reused when present, else trained (resuming any interrupted run)."""
    config, run_dir, _ = DESIGNS[design]
    final = ROOT / run_dir / FINAL_NAME
    if final.is_file():
        print(f"{design}: reusing {final}", flush=True)
        return final
    print(f"{design}: training into {run_dir} (config {config})", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, str(ROOT / "tools" / "train_det.py"), "--config-file",
                    str(config_path("det", config)), "--output-dir", str(ROOT / run_dir), "--resume",
                    "threads", str(threads)], check=True, env=env, cwd=ROOT)
    if not final.is_file():
        raise RuntimeError(f"training {design} finished without writing {final}")
    return final


def count_second_stage_inputs(model: torch.nn.Module, counts: list[int]) -> Any:
    """Record how many proposals reach the RoI pooling (the second stage) on each forward."""
    return model.roi_heads.box_roi_pool.register_forward_hook(
        lambda _m, args, _out: counts.append(sum(len(b) for b in args[1])))


def tradeoff_row(design: str, weights: Path, proposals: int, max_images: int) -> dict[str, Any]:
    """AP, AP50, proposals and latency per image of one design at one proposal count, eager and fused."""
    name = DESIGNS[design][2]
    eager = load_detector(name, weights, overrides=["test.proposals", str(proposals)]).model
    fused = optimize_for_inference(eager)
    config = load_config(DetConfig(), weights.parent / "config.yaml")  # the run's, with the demo data's paths
    val = CocoDetection(config.data.val_images, config.data.val_ann, train=False)
    indices = range(min(max_images, len(val))) if max_images else range(len(val))
    counts: list[int] = []
    hook = count_second_stage_inputs(eager, counts)
    records: dict[str, list[dict[str, Any]]] = {"eager": [], "fused": []}
    times: dict[str, list[float]] = {"eager": [], "fused": []}
    cpu_times: dict[str, list[float]] = {"eager": [], "fused": []}
    load_before = load_average()
    with torch.inference_mode():
        first, _ = val[0]
        for model in (eager, fused):  # warm-up (allocator, lazy init), not timed
            model([first])
        counts.clear()
        for n, index in enumerate(indices):
            image, target = val[index]
            order = ("eager", "fused") if n % 2 == 0 else ("fused", "eager")
            for kind in order:
                model = eager if kind == "eager" else fused
                start, cpu_start = time.perf_counter(), time.process_time()
                out = model([image])
                times[kind].append(time.perf_counter() - start)
                cpu_times[kind].append(time.process_time() - cpu_start)
                records[kind] += to_coco_results(out, [int(target["image_id"])], val)
    hook.remove()
    if max_images:
        val.ids = [val.ids[i] for i in indices]  # evaluate over the images that ran
    metrics = {kind: coco_evaluate(val, recs) for kind, recs in records.items()}
    return {
        "design": design, "detector": name, "proposals": proposals, "images": len(times["eager"]),
        "second_stage_inputs_mean": round(statistics.mean(counts), 1),
        "second_stage_inputs_max": max(counts),
        "AP": round(100 * metrics["eager"]["AP"], 2), "AP50": round(100 * metrics["eager"]["AP50"], 2),
        "AP_fused": round(100 * metrics["fused"]["AP"], 2), "AP50_fused": round(100 * metrics["fused"]["AP50"], 2),
        "eager_ms": round(1000 * statistics.median(times["eager"]), 2),
        "fused_ms": round(1000 * statistics.median(times["fused"]), 2),
        "eager_cpu_ms": round(1000 * statistics.median(cpu_times["eager"]), 2),
        "fused_cpu_ms": round(1000 * statistics.median(cpu_times["fused"]), 2),
        "load_average_before": load_before, "load_average_after": load_average(),
    }


def memory_child(arch: str, chunk: int, size: int, proposals: int, nms: float) -> dict[str, Any]:
    """In this (fresh) process: build the untrained C4 detector, run one forward, report memory and time."""
    from nasnet_zoo.detection.modeling.builders import build_detector

    torch.manual_seed(0)
    model = build_detector(f"fasterrcnn_nasnet_a_{arch}_c4", num_classes=91, min_size=size, max_size=size,
                           box_head_chunk=chunk, rpn_pre_nms_top_n_test=proposals,
                           rpn_post_nms_top_n_test=proposals, rpn_nms_thresh=nms).eval()
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(1))
    counts: list[int] = []
    count_second_stage_inputs(model, counts)
    clocks: dict[str, float] = {"wall": 0.0, "cpu": 0.0}  # the second stage's share of the forward

    def head_starts(_module: torch.nn.Module, _args: Any) -> None:
        clocks["wall"] -= time.perf_counter()
        clocks["cpu"] -= time.process_time()

    def head_ends(_module: torch.nn.Module, _args: Any, _out: Any) -> None:
        clocks["wall"] += time.perf_counter()
        clocks["cpu"] += time.process_time()

    model.roi_heads.box_head.register_forward_pre_hook(head_starts)
    model.roi_heads.box_head.register_forward_hook(head_ends)
    built_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    load_before = load_average()
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model([image])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"detector": f"fasterrcnn_nasnet_a_{arch}_c4", "box_head_chunk": chunk, "image_px": size,
            "proposals_setting": proposals, "rpn_nms_thresh": nms, "second_stage_inputs": counts[0],
            "rss_after_build_mb": round(built_kb / 1024, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
            "forward_peak_over_build_mb": round((peak_kb - built_kb) / 1024, 1),
            "forward_s": round(seconds, 2), "second_stage_s": round(clocks["wall"], 2),
            "forward_cpu_s": round(cpu_seconds, 2), "second_stage_cpu_s": round(clocks["cpu"], 2),
            "threads": torch.get_num_threads(), "load_average_before": load_before,
            "load_average_after": load_average()}


#: memory runs: name -> (box_head_chunk, proposals or None for --memory-proposals, RPN NMS IoU threshold).
#: "first-stage" keeps one proposal, so its peak is the backbone's and RPN's alone: the floor the second stage
#: adds to. An untrained RPN's NMS (0.7, torchvision's) leaves a few hundred of the 1000; "chunked-all" turns
#: NMS off (threshold 1.0) so that all 1000 reach the second stage, to show the chunked peak does not grow.
MEMORY_RUNS = {"chunked": (64, None, 0.7), "unchunked": (UNCHUNKED, None, 0.7), "first-stage": (64, 1, 0.7),
               "chunked-all": (64, None, 1.0)}


def memory_rows(archs: list[str], runs: list[str], size: int, proposals: int, threads: int) -> list[dict[str, Any]]:
    rows = []
    for arch in archs:
        for run in runs:
            chunk, count, nms = MEMORY_RUNS[run]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            done = subprocess.run([sys.executable, __file__, "--memory-child", arch, str(chunk), "--memory-size",
                                   str(size), "--memory-proposals", str(count or proposals), "--memory-nms", str(nms),
                                   "--threads", str(threads)],
                                  env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"memory child {arch} {run} failed:\n{done.stderr[-3000:]}")
            rows.append({"run": run, **json.loads(done.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_tables(report: dict[str, Any]) -> None:
    """Markdown tables; times as wall (CPU) of this process, which differ when other processes share the cores."""
    if report.get("tradeoff"):
        print("\n| design | test.proposals | reach 2nd stage (mean) | AP | AP50 | eager ms/img wall (CPU) | "
              "fused ms/img wall (CPU) | load avg |")
        print("|---|---|---|---|---|---|---|---|")
        for r in report["tradeoff"]:
            print(f"| {r['design']} | {r['proposals']} | {r['second_stage_inputs_mean']:.0f} | {r['AP']:.1f} | "
                  f"{r['AP50']:.1f} | {r['eager_ms']:.0f} ({r['eager_cpu_ms']:.0f}) | "
                  f"{r['fused_ms']:.0f} ({r['fused_cpu_ms']:.0f}) | "
                  f"{r['load_average_before'][0]:.1f}-{r['load_average_after'][0]:.1f} |")
    if report.get("memory"):
        print("\n| detector | box_head_chunk | crops | peak RSS MB | forward over build MB | forward s wall (CPU) | "
              "2nd stage s wall (CPU) | load avg |")
        print("|---|---|---|---|---|---|---|---|")
        for r in report["memory"]:
            chunk = "all at once" if r["box_head_chunk"] >= UNCHUNKED else r["box_head_chunk"]
            if r["proposals_setting"] == 1:
                chunk = "(1 proposal: first stage only)"
            elif r.get("rpn_nms_thresh", 0.7) >= 1.0:
                chunk = f"{chunk}, RPN NMS off"
            print(f"| {r['detector']} | {chunk} | {r['second_stage_inputs']} | {r['peak_rss_mb']:.0f} | "
                  f"{r['forward_peak_over_build_mb']:.0f} | {r['forward_s']:.1f} ({r['forward_cpu_s']:.1f}) | "
                  f"{r['second_stage_s']:.1f} ({r['second_stage_cpu_s']:.1f}) | "
                  f"{r['load_average_before'][0]:.1f}-{r['load_average_after'][0]:.1f} |")


def save(out: Path, part: dict[str, Any]) -> None:
    """Update ``out`` with this run's part: its rows replace the rows of the same setting; rows other runs
    wrote (other flags) are kept."""
    report = json.loads(out.read_text()) if out.is_file() else {}
    keys = {"tradeoff": ("design", "proposals"),
            "memory": ("detector", "box_head_chunk", "proposals_setting", "rpn_nms_thresh")}
    for table, key in keys.items():
        if table in part:
            fresh = {tuple(r[k] for k in key) for r in part[table]}
            part[table] = [r for r in report.get(table, []) if tuple(r[k] for k in key) not in fresh] + part[table]
    atomic_write_json(out, {**report, **part})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS), default=["fpn", "c4"])
    parser.add_argument("--proposals", nargs="+", type=int, default=[1000, 300, 100, 50])
    parser.add_argument("--max-images", type=int, default=0, help="val images to run (0: all)")
    parser.add_argument("--memory-archs", nargs="+", choices=("mobile", "large"), default=["mobile", "large"])
    parser.add_argument("--memory-runs", nargs="+", choices=sorted(MEMORY_RUNS), default=list(MEMORY_RUNS))
    parser.add_argument("--memory-size", type=int, default=320)
    parser.add_argument("--memory-proposals", type=int, default=1000)
    parser.add_argument("--memory-nms", type=float, default=0.7, help=argparse.SUPPRESS)
    parser.add_argument("--skip-tradeoff", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench/det_proposals.json")
    parser.add_argument("--memory-child", nargs=2, metavar=("ARCH", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        arch, chunk = args.memory_child
        print(json.dumps(memory_child(arch, int(chunk), args.memory_size, args.memory_proposals,
                                       args.memory_nms)))
        return 0
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    conditions = {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                  "threads": args.threads}
    if not args.skip_tradeoff:
        rows: list[dict[str, Any]] = []
        for design in args.designs:
            weights = ensure_trained(design, args.threads)
            for proposals in args.proposals:
                rows.append(tradeoff_row(design, weights, proposals, args.max_images))
                print(json.dumps(rows[-1]), flush=True)
                save(out, {**conditions, "tradeoff": rows})
    if not args.skip_memory:
        rows = memory_rows(args.memory_archs, args.memory_runs, args.memory_size, args.memory_proposals, args.threads)
        save(out, {**conditions, "memory": rows})
    print_tables(json.loads(out.read_text()) if out.is_file() else {})
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
