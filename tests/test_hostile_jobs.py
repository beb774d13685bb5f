"""A job with a flood of per-file errors keeps a small record (a bounded sample plus exact counts); the
full list goes to a file under the data dir."""

from __future__ import annotations

import json

from vss_core.jobs.board import job_key
from vss_core.jobs.registry import ERROR_SAMPLE, JobRegistry
from vss_core.labeling.loader import load_job

N = 100_000


def test_a_load_of_100000_missing_files_keeps_a_small_record_and_lists_them_all(tmp_path, redis_client,
                                                                               vector_store):
    root = tmp_path / "root"
    root.mkdir()
    missing = [str(root / f"gone_{i:06d}.jpg") for i in range(N)]
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{p},copepod\n" for p in missing))
    registry = JobRegistry(boards=lambda project: redis_client, errors_dir=tmp_path / "data")
    job_id = registry.start("load", load_job("csv", str(root / "labels.csv"), (root,), None, vector_store),
                            project="p")
    snap = registry.wait(job_id, 240)
    assert snap.state == "done" and snap.done == N and snap.total == N
    assert snap.error_count == N and len(snap.errors) == ERROR_SAMPLE
    assert snap.errors[0] == (missing[0], "cannot read file: file not found")
    on_board = redis_client.get(job_key(job_id))
    assert len(on_board) < 64 * 1024 and json.loads(on_board)["error_count"] == N
    other = JobRegistry(boards=lambda project: redis_client).get(job_id, project="p")  # another process's view
    assert other.error_count == N and len(other.errors) == ERROR_SAMPLE
    lines = (tmp_path / "data" / "job-errors" / f"{job_id}.jsonl").read_text(encoding="utf-8").splitlines()
    assert snap.errors_file == str(tmp_path / "data" / "job-errors" / f"{job_id}.jsonl")
    assert [json.loads(line)[0] for line in lines] == missing


def test_errors_reported_one_by_one_are_counted_exactly_and_sampled(tmp_path):
    registry = JobRegistry(errors_dir=tmp_path)

    def work(progress):
        for i in range(1000):
            progress.error(f"item{i}", "bad")
        progress.advance(5, errors=[("x", "y")] * 5)

    snap = registry.wait(registry.start("x", work), 30)
    assert (snap.error_count, len(snap.errors), snap.done) == (1005, ERROR_SAMPLE, 5)
    assert len((tmp_path / "job-errors" / f"{snap.id}.jsonl").read_text().splitlines()) == 1005
