"""What users run, against fastapi-vss's own code: the CLI as a whole cold process, and the app's search path.

    python bench/whole_process.py [--models tiny,vit-base] [--n-tiny 2048] [--n-base 64] [--repeat 3]
                                  [--exemplars 5000] [--image-dir DIR] [--fastapi-vss DIR]

For each model (random weights saved with save_pretrained, the processor of
google/vit-base-patch16-224) a project YAML points at the model folder and an embedded Redis,
which this script starts and fills with --exemplars vectors (FLAT, fastapi-vss's index/doc: layout).
Each method runs as its own process, interleaved, --repeat times, on the same JPEG files:
  vss cli         python -m vss_core knn PROJECT <files> --top-n 5   (wall time of the whole process), with
                  the model cache of its data dir built by one first run before the others (timed and
                  printed on its own); "model cache off" is the same with VSS_MODEL_CACHE=0
  fastapi-vss     a process that imports ViTWrapper from fastapi-vss's source as tests/peers/fastapi_vss keeps it
                  (src/app/predictors/process_vits.py, vector_similarity.py; a silent app.logger; the one change:
                  redis-py's module indexDefinition is aliased to its current name index_definition),
                  builds it on the same model folder and Redis, and calls predict(files, top_n=5)
  vss app path    a process that builds the Embedder and store once (the app caches them), then calls
                  vss_core.labeling.search.search on the files' bytes (uploads) from a fresh thread, as each
                  Streamlit run does; the time of that call (the 2nd of 2: warm)
  fastapi-vss warm  ViTWrapper.predict's second call in one process (the same warm state)
Targets (whole process): ViT-Base >= 0.95x fastapi-vss, tiny >= 2.5x.  CPU seconds (user + system, of the
child process or of the timed call) are reported too: on a shared machine they move less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as common

TARGETS = {"vit-base": 0.95, "tiny": 2.5}
PEER = Path(__file__).resolve().parent.parent / "tests" / "peers" / "fastapi_vss"
FASTAPI_FILES = ["process_vits.py", "vector_similarity.py"]

FASTAPI_CHILD = r"""
import sys, threading, time
start = time.perf_counter()
import redis
import redis.commands.search.index_definition as index_definition
sys.modules["redis.commands.search.indexDefinition"] = index_definition  # the module's pre-redis-6 name
from app.predictors.process_vits import ViTWrapper
model, socket, mode, *paths = sys.argv[1:]
r = redis.Redis(unix_socket_path=socket)
vit = ViTWrapper(r, "cpu", model, batch_size=32)
timings = []
for _ in range(2 if mode == "warm" else 1):
    t, c = time.perf_counter(), time.process_time()
    predictions, scores, ids = vit.predict(paths, top_n=5)
    timings.append((time.perf_counter() - t, time.process_time() - c))
assert len(predictions) == len(paths) and all(len(p) == 5 for p in predictions), "fastapi-vss found too little"
print("RESULT", *timings[-1])
"""

APP_CHILD = r"""
import sys, threading, time
from pathlib import Path
from vss_core.config.projects import load_projects
from vss_core.embed.embedder import for_project
from vss_core.labeling.search import search
from vss_core.redis.exemplars import open_store
config, name, *paths = sys.argv[1:]
project = load_projects(config).projects[name]
embedder = for_project(project)  # as ui.resources builds and caches it
store = open_store(project, embedder.dim)
uploads = [Path(p).read_bytes() for p in paths]
timings = []
def run():  # each Streamlit run is a fresh thread
    t, c = time.perf_counter(), time.process_time()
    results = search(embedder, store, uploads, top_n=5, names=[Path(p).name for p in paths])
    timings.append((time.perf_counter() - t, time.process_time() - c))
    assert len(results.ok) == len(paths) and all(len(r.neighbors) == 5 for r in results.ok)
for _ in range(2):
    thread = threading.Thread(target=run); thread.start(); thread.join()
print("RESULT", *timings[-1])
"""


def fastapi_source(peer: Path, into: Path) -> Path:
    """fastapi-vss's predictor as the package ``app`` under ``into`` (the copy in tests/peers, its logger
    silent); returns the folder to put on PYTHONPATH."""
    predictors = into / "app" / "predictors"
    predictors.mkdir(parents=True, exist_ok=True)
    (into / "app" / "__init__.py").write_text("")
    (predictors / "__init__.py").write_text("")
    (into / "app" / "logger").mkdir(exist_ok=True)
    (into / "app" / "logger" / "__init__.py").write_text("def err(*a, **k): pass\ninfo = debug = err\n")
    for name in FASTAPI_FILES:
        (predictors / name).write_text((peer / name).read_text())
    return into


def setup_project(kind: str, tmp: Path, exemplars: int):
    """A model folder, a project YAML and a filled embedded Redis; (config dir, project, socket, model, client).

    Hold the client: the embedded server stops when the last process connected to it exits."""
    from vss_core.config.projects import load_projects
    from vss_core.redis.exemplars import Record, open_store
    from vss_core.redis.server import connect

    model = common.save_model(kind, tmp / f"model-{kind}")
    config = tmp / "config"
    config.mkdir(exist_ok=True)
    name = f"bench-{kind}"
    (config / f"{name}.yml").write_text(f"vss:\n  project: {name}\n  model: {model}\n  index_algorithm: FLAT\n"
                                        f"  device: cpu\n")
    project = load_projects(config).projects[name]
    import json as _json
    dim = _json.loads((model / "config.json").read_text())["hidden_size"]
    store = open_store(project, dim)
    vectors, _ = common.clustered(exemplars, dim, clusters=50)
    store.add(Record(f"label{i % 50}", str(i), v) for i, v in enumerate(vectors))
    client = connect(project)
    client.ping()
    socket = client.connection_pool.connection_kwargs.get("path")
    return config, name, Path(socket), model, client


def run(command: list[str], env: dict, cwd: Path) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """((wall, CPU) seconds of the whole process, the (wall, CPU) seconds it printed or None)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode:
        raise RuntimeError(f"{command[:4]} exited {done.returncode}: {done.stderr[-2000:]}")
    inner = [tuple(map(float, line.split()[1:3])) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return (wall, cpu), inner[-1] if inner else None


def bench_model(kind: str, paths: list[Path], args, tmp: Path, fastapi_src: Path) -> tuple[list[dict], dict]:
    config, name, socket, model, client = setup_project(kind, tmp, args.exemplars)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VSS_DATA_DIR": str(tmp / "data"), "LOG_DIR": str(tmp / "logs"),
           "PYTHONPATH": str(common.REPO)}
    files = [str(p) for p in paths]
    fenv = {**env, "PYTHONPATH": str(fastapi_src)}
    cli = [sys.executable, "-m", "vss_core", "--config", str(config), "knn", name, *files, "--top-n", "5"]
    methods = {
        "vss cli (whole process)": (cli, env, common.REPO, "wall"),
        "fastapi-vss ViTWrapper.predict (whole process)": ([sys.executable, "-c", FASTAPI_CHILD, str(model), str(socket),
                                                            "cold", *files], fenv, tmp, "wall"),
        "vss app search path (warm, fresh thread)": ([sys.executable, "-c", APP_CHILD, str(config), name, *files],
                                                     env, common.REPO, "inner"),
        "fastapi-vss predict (warm)": ([sys.executable, "-c", FASTAPI_CHILD, str(model), str(socket), "warm", *files],
                                       fenv, tmp, "inner"),
        "vss cli, model cache off (whole process)": (cli, {**env, "VSS_MODEL_CACHE": "0"}, common.REPO, "wall"),
    }
    (first, first_cpu), _ = run(cli, env, common.REPO)  # the first run ever builds the model cache
    print(f"  {kind}: vss cli, first run (builds the model cache): {first:.2f} s ({first_cpu:.1f} s CPU)", flush=True)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.repeat):  # interleaved: load changes hit every method alike
        for method, (command, menv, cwd, which) in methods.items():
            client.ping()  # keeps this connection (and so the server) alive between the processes
            wall, inner = run(command, menv, cwd)
            pair = wall if which == "wall" else inner
            times[method].append(pair[0])
            cpu[method].append(pair[1])
            print(f"  {kind}: {method}: {pair[0]:.2f} s ({pair[1]:.1f} s CPU)", flush=True)
    n = len(paths)
    rate = {m: n / statistics.median(t) for m, t in times.items()}
    names = list(methods)
    rows = [{"model": kind, "method": m, "median s": statistics.median(times[m]), "img/s": rate[m],
             "x fastapi-vss": rate[m] / rate[names[1] if "whole" in m else names[3]],
             "median CPU s": statistics.median(cpu[m]),
             "CPU x fastapi-vss": statistics.median(cpu[names[1] if "whole" in m else names[3]]) / statistics.median(cpu[m])}
            for m in names]
    cli, app = rate[names[0]] / rate[names[1]], rate[names[2]] / rate[names[3]]
    summary = {"n": n, "first_run_s": first, "times_s": times, "cpu_s": cpu, "images_per_s_median": rate, "cli_vs_fastapi": cli, "app_vs_fastapi": app,
               "target": TARGETS[kind], "verdict": common.verdict(cli, TARGETS[kind])}
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit-base")
    parser.add_argument("--n-tiny", type=int, default=2048)
    parser.add_argument("--n-base", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exemplars", type=int, default=5000)
    parser.add_argument("--image-dir", type=Path, help="where the JPEGs are (re)used; default a tmp dir")
    parser.add_argument("--fastapi-vss", type=Path, default=PEER, help="folder of fastapi-vss's predictor files")
    args = parser.parse_args()
    kinds = [m for m in args.models.split(",") if m]
    counts = {"tiny": args.n_tiny, "vit-base": args.n_base}
    result = {"repeat": args.repeat, "exemplars": args.exemplars, "models": {}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vss-whole-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["VSS_DATA_DIR"] = str(tmp / "data")
        fastapi_src = fastapi_source(args.fastapi_vss, tmp / "fastapi-vss")
        folder = args.image_dir or tmp / "images"
        need = max(counts[k] for k in kinds)
        paths = sorted(folder.glob("img_*.jpg"))[:need] if folder.is_dir() else []
        if len(paths) < need:
            paths = common.write_jpegs(folder, need)
        try:
            for kind in kinds:
                print(f"running {kind} on {counts[kind]} images ...", flush=True)
                model_rows, summary = bench_model(kind, paths[:counts[kind]], args, tmp, fastapi_src)
                rows += model_rows
                result["models"][kind] = summary
        finally:
            from vss_core.redis.server import _servers

            for server in list(_servers.values()):
                server.stop()
    print(f"\nWhole process and app search path vs fastapi-vss, JPEG files -> top-5, CPU")
    print(f"machine: {common.machine()}\n")
    common.table(rows)
    print()
    for kind, s in result["models"].items():
        print(f"{kind}: cli / fastapi-vss = {s['cli_vs_fastapi']:.2f}x (target >= {s['target']}x: {s['verdict']}); "
              f"app search path / fastapi-vss predict (warm) = {s['app_vs_fastapi']:.2f}x")
    result["rows"] = rows
    common.save_result("whole_process", result)


if __name__ == "__main__":
    main()
