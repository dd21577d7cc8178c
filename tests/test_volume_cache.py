from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imaging import volume_cache
from imaging.volume_cache import cache_clear, cache_info, load_volume

SHAPE = (4, 10, 10)  # 800 bytes of int16


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    cache_clear()
    yield
    cache_clear()


def write_volume(path: Path, fill: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.full(SHAPE, fill, dtype=np.int16))
    return path


def cap_bytes(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    monkeypatch.setattr(volume_cache, "max_bytes", lambda: limit)


def test_a_volume_is_loaded_into_memory_read_only(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "a" / "volume.npy", -850)

    volume = load_volume(path)

    assert volume.dtype == np.int16 and volume.shape == SHAPE
    assert (volume == -850).all()
    assert not isinstance(volume, np.memmap)
    assert not volume.flags.writeable
    with pytest.raises(ValueError):
        volume[0, 0, 0] = 0


def test_a_second_load_is_served_from_memory(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "volume.npy", 1)

    first = load_volume(path)
    second = load_volume(path)

    assert second is first
    assert cache_info() | {"max_bytes": 0} == {
        "bytes": first.nbytes,
        "entries": 1,
        "hits": 1,
        "misses": 1,
        "max_bytes": 0,
    }


def test_a_rewritten_file_is_loaded_again(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "volume.npy", 1)
    load_volume(path)
    write_volume(path, 2)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime, surely

    volume = load_volume(path)

    assert (volume == 2).all()
    assert cache_info()["entries"] == 1  # the stale array was dropped


def test_the_least_recently_used_volume_is_evicted_by_bytes(tmp_path: Path, monkeypatch) -> None:
    cap_bytes(monkeypatch, 2 * 800)
    a, b, c = (write_volume(tmp_path / name / "volume.npy", i) for i, name in enumerate("abc"))
    load_volume(a)
    load_volume(b)
    load_volume(a)  # a is now more recent than b

    load_volume(c)

    assert cache_info()["entries"] == 2 and cache_info()["bytes"] == 1600
    misses = cache_info()["misses"]
    load_volume(a)
    load_volume(c)
    assert cache_info()["misses"] == misses  # a and c stayed
    load_volume(b)
    assert cache_info()["misses"] == misses + 1  # b was evicted


def test_a_volume_larger_than_the_cap_is_returned_but_not_cached(tmp_path: Path, monkeypatch) -> None:
    cap_bytes(monkeypatch, 799)
    path = write_volume(tmp_path / "volume.npy", 5)

    volume = load_volume(path)

    assert (volume == 5).all() and not volume.flags.writeable
    assert cache_info()["entries"] == 0 and cache_info()["bytes"] == 0


def test_a_file_that_is_not_an_int16_volume_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "volume.npy"
    np.save(path, np.zeros(SHAPE, dtype=np.float32))

    with pytest.raises(ValueError, match="expected int16"):
        load_volume(path)


def test_threads_loading_at_once_read_each_file_once(tmp_path: Path, monkeypatch) -> None:
    paths = [write_volume(tmp_path / str(i) / "volume.npy", i) for i in range(3)]
    reads: list[Path] = []
    real_read = volume_cache._read

    def counting_read(path: Path) -> np.ndarray:
        reads.append(path)
        time.sleep(0.02)  # a slow disk: the other threads arrive while this one reads
        return real_read(path)

    monkeypatch.setattr(volume_cache, "_read", counting_read)
    start = threading.Barrier(8)
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(8)}

    def worker(n: int) -> None:
        start.wait()
        for k in range(30):
            results[n].append(load_volume(paths[(n + k) % 3]))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(reads) == sorted(p.resolve() for p in paths)
    for n, loaded in results.items():
        assert all(int(v[0, 0, 0]) == (n + k) % 3 for k, v in enumerate(loaded))
    info = cache_info()
    assert info["entries"] == 3 and info["hits"] + info["misses"] == 8 * 30


def test_threads_under_a_small_cap_keep_the_byte_count_right(tmp_path: Path, monkeypatch) -> None:
    cap_bytes(monkeypatch, 2 * 800)
    paths = [write_volume(tmp_path / str(i) / "volume.npy", i) for i in range(5)]

    wrong: list[tuple[int, int]] = []

    def worker(n: int) -> None:
        for k in range(40):
            want = (n * 7 + k) % 5
            got = int(load_volume(paths[want])[0, 0, 0])
            if got != want:
                wrong.append((want, got))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert wrong == []
    info = cache_info()
    assert info["entries"] <= 2 and info["bytes"] == 800 * info["entries"]


def test_the_cap_comes_from_settings(settings) -> None:
    settings.VOLUME_CACHE_BYTES = 12345

    assert volume_cache.max_bytes() == 12345


def test_the_cap_defaults_to_one_gib(settings) -> None:
    del settings.VOLUME_CACHE_BYTES
    assert volume_cache.max_bytes() == 1024**3
