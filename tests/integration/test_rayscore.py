"""``kiln predict --engine ray`` (training/rayscore.py) on real Ray: a two-node cluster
started with ``ray start`` on this machine, and the local Ray a run starts for itself.

Every run is compared with the single-process engine (training/batch.py) on the same
input: the same predictions row for row and in order, the same rejects and warnings files,
the same counts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kiln.errors import KilnError
from tests.conftest import REPO, run_kiln
from training.batch import ScoreSummary, score_file
from training.rayscore import ACTOR_RESTARTS, Progress, score_with_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RAY = Path(sys.executable).parent / "ray"
CHURN_CSV = REPO / "training" / "data" / "churn.csv"
SCORER = "MapBatches(_Scorer)"  # in the title of every scoring actor's process


@pytest.fixture(scope="module")
def churn_tag(served_models: dict[str, Any]) -> str:
    return str(served_models["churn"].tag)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray(*args: str) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [str(RAY), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node (2 CPUs) and a second node (1 CPU) joined with ``ray start --address``,
    both on 127.0.0.1, with a token of their own (Ray's token authentication: the node and
    every driver that joins need it); stopped after the module."""
    address = f"127.0.0.1:{_free_port()}"
    common = ("--node-ip-address=127.0.0.1", "--disable-usage-stats")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:
        _ray("start", "--head", f"--port={address.split(':')[1]}", "--num-cpus=2",
             "--include-dashboard=false", *common)  # fmt: skip
        _ray("start", f"--address={address}", "--num-cpus=1", *common)
        yield address
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def churn_frame() -> pd.DataFrame:
    return pd.read_csv(CHURN_CSV, dtype={"customer_id": str})


def parquet_parts(directory: Path, frame: pd.DataFrame, parts: int) -> Path:
    """``frame`` as ``parts`` Parquet files of row groups of 400 rows, in name order."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        piece = frame.iloc[chunk]
        pq.write_table(
            pa.Table.from_pandas(piece, preserve_index=False),
            directory / f"part-{index:02d}.parquet",
            row_group_size=400,
        )
    return directory


def odd_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the rules refuse (a float32 overflow) and rows the input checks warn about (an
    unseen plan), spread over the parts."""
    frame = frame.copy()
    frame.loc[frame.index[7::450], "monthly_charge"] = 1e39
    frame.loc[frame.index[3::500], "plan"] = "platinum"
    return frame


def ray_parts(output: Path) -> pa.Table:
    """The Ray engine's output read as a user reads it: parts in name order."""
    files = sorted(output.glob("*.parquet"))
    assert files, f"no parts in {output}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def assert_same_run(local: ScoreSummary, ray: ScoreSummary) -> None:
    counts = ("rows", "scored", "rejected", "warned")
    assert [getattr(ray, c) for c in counts] == [getattr(local, c) for c in counts]
    assert ray.findings == local.findings and ray.parts == local.parts
    assert ray.rejects.read_text() == local.rejects.read_text()
    if local.warnings is not None:
        assert ray.warnings is not None
        assert ray.warnings.read_text() == local.warnings.read_text()


def test_a_two_node_cluster_scores_like_one_process(
    cluster: str, churn_tag: str, tmp_path: Path
) -> None:
    import ray

    ray.init(address=cluster, logging_level="WARNING")
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert len(nodes) == 2 and ray.is_initialized() is False
    data = parquet_parts(tmp_path / "in", odd_rows(churn_frame()), parts=3)
    local = score_file(churn_tag, data, tmp_path / "local.parquet", chunk_rows=300)
    assert local.rejected == 7 and local.findings  # the odd rows are there to compare
    assert local.warnings is not None
    warned = pd.read_csv(local.warnings, dtype={"customer_id": str})
    assert local.warned == warned[["part", "row"]].drop_duplicates().shape[0] >= 6
    seen: list[Progress] = []
    rows: list[int] = []
    summary = score_with_ray(
        churn_tag, data, tmp_path / "scores", address=cluster, workers=2, chunk_rows=300,
        on_parts=seen.append, on_progress=rows.append,
    )  # fmt: skip
    assert summary.engine == "ray" and summary.output == tmp_path / "scores"
    # progress as it ran: rows in steps that add up, and every part said done at the end
    assert sum(rows) == 3000 and seen[-1] == Progress(rows=3000, parts_done=3, parts=3)
    assert [p.parts_done for p in seen] == sorted(p.parts_done for p in seen)
    assert ray_parts(tmp_path / "scores").equals(pq.read_table(local.output))
    assert_same_run(local, summary)
    assert "part" in local.rejects.read_text().splitlines()[0].split(",")
    assert not list(tmp_path.glob("scores.partial-*")) and not list(tmp_path.glob("scores.work-*"))


def test_the_cli_starts_a_local_ray_for_csv_parts(churn_tag: str, tmp_path: Path) -> None:
    frame = churn_frame()
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[frame.index[::700], "tenure_months"] = "n/a"  # refused: not a number
    (tmp_path / "in").mkdir()
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), 2)):
        frame.iloc[chunk].to_csv(tmp_path / "in" / f"day-{index}.csv", index=False)
    pattern = str(tmp_path / "in" / "day-*.csv")
    local = score_file(churn_tag, pattern, tmp_path / "local.csv")
    done = run_kiln(
        "predict", churn_tag, "--input", pattern, "--output", str(tmp_path / "scores"),
        "--engine", "ray", "--workers", "2", "--format", "csv", "--chunk-rows", "500",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"scored {local.scored:,} of 3,000 rows" in done.stdout
    assert f"{local.rejected} rows rejected" in done.stdout
    parts = sorted((tmp_path / "scores").glob("*.csv"))
    assert len(parts) >= 2
    got = pd.concat([pd.read_csv(p, dtype={"customer_id": str}) for p in parts], ignore_index=True)
    want = pd.read_csv(local.output, dtype={"customer_id": str})
    pd.testing.assert_frame_equal(got, want)
    assert (tmp_path / "scores.rejects.csv").read_text() == local.rejects.read_text()
    assert "Ray" not in done.stdout.split("scored")[0]  # Kiln's words, not Ray's plan


def test_a_lost_actor_is_replaced_and_its_unit_scored_again(churn_tag: str, tmp_path: Path) -> None:
    # 90,000 rows in 10 parts, units of 800: seconds of scoring, time to kill an actor in
    frame = pd.concat([churn_frame()] * 30, ignore_index=True)
    data = parquet_parts(tmp_path / "in", odd_rows(frame), parts=10)
    local = score_file(churn_tag, data, tmp_path / "local.parquet", chunk_rows=500)
    killed: list[int] = []
    lock = threading.Lock()

    def kill_one(progress: Progress) -> None:
        with lock:
            if killed or progress.rows == 0:
                return
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if SCORER in " ".join(proc.info["cmdline"] or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    return

    summary = score_with_ray(
        churn_tag, data, tmp_path / "scores", workers=2, chunk_rows=500, on_parts=kill_one
    )
    assert killed, "no scoring actor was seen to kill: the run ended first"
    assert ray_parts(tmp_path / "scores").equals(pq.read_table(local.output))
    assert_same_run(local, summary)


def test_actors_killed_past_their_restarts_end_the_run_with_rays_words(
    churn_tag: str, tmp_path: Path
) -> None:
    data = parquet_parts(tmp_path / "in", churn_frame(), parts=2)
    killed: list[int] = []

    def kill_all(progress: Progress) -> None:  # every scoring actor, twice a second
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if SCORER in " ".join(proc.info["cmdline"] or []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])

    with pytest.raises(KilnError, match="the Ray run failed: The actor is dead") as caught:
        score_with_ray(
            churn_tag, data, tmp_path / "scores", workers=1, chunk_rows=500, on_parts=kill_all
        )
    assert len(killed) > ACTOR_RESTARTS, caught.value
    assert not (tmp_path / "scores").exists() and not list(tmp_path.glob("scores.*"))


def test_a_part_that_breaks_while_read_is_named(churn_tag: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    churn_frame().to_csv(tmp_path / "in" / "a.csv", index=False)
    text = CHURN_CSV.read_text().splitlines()
    broken = [*text[:1500], text[1500] + ",one field too many", *text[1501:]]
    (tmp_path / "in" / "b.csv").write_text("\n".join(broken) + "\n")
    done = run_kiln(
        "predict", churn_tag, "--input", str(tmp_path / "in"), "--output",
        str(tmp_path / "scores"), "--engine", "ray", "--workers", "1",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{tmp_path}/in/b.csv: cannot be read as CSV" in done.stderr
    assert not (tmp_path / "scores").exists() and not (tmp_path / "scores.rejects.csv").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--workers", "2"], "--address and --workers are for --engine ray"),
        (["--engine", "ray", "--output", "x.parquet"], "the output is a directory of parts"),
        (["--engine", "ray", "--format", "json"], "the output format must be parquet or csv"),
    ],
)
def test_wrong_arguments_are_refused_before_ray_starts(
    churn_tag: str, tmp_path: Path, extra: list[str], words: str
) -> None:
    args = ["predict", churn_tag, "--input", str(CHURN_CSV), "--output", str(tmp_path / "o")]
    done = run_kiln(*args, *extra)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Ray" not in done.stderr


@pytest.mark.parametrize("how", ["--address", "RAY_ADDRESS"])
def test_a_cluster_that_is_not_there_is_said_at_once(
    churn_tag: str, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    args = ["predict", churn_tag, "--input", str(CHURN_CSV), "--output", str(tmp_path / "o"),
            "--engine", "ray"]  # fmt: skip
    if how == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        args += ["--address", address]
    done = run_kiln(*args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot join the Ray cluster at {address}: nothing answers there" in done.stderr


def test_an_existing_output_directory_is_left_alone(churn_tag: str, tmp_path: Path) -> None:
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "mine.txt").write_text("keep me")
    done = run_kiln(
        "predict", churn_tag, "--input", str(CHURN_CSV), "--output", str(tmp_path / "scores"),
        "--engine", "ray",
    )  # fmt: skip
    assert done.returncode == 2 and "already exists" in done.stderr
    assert (tmp_path / "scores" / "mine.txt").read_text() == "keep me"
