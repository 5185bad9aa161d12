"""scripts/build-base-image.sh picks its Debian mirror and keys on hosts unlike ours: the host's
own Debian mirror when it has one, deb.debian.org with Debian's keys on a host without a Debian
source (a stock Ubuntu CI runner, stood in for by an apt directory holding only Ubuntu's
sources). What it would run is read from --dry-run; the real bootstrap is what the suite's
base image fixture and `.ci/run` do on this machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "build-base-image.sh"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

UBUNTU = """Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""
DEBIAN = """Types: deb
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
"""


def dry_run(apt: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "MLOPS_APT_DIR": str(apt), **env},
        timeout=60,
    )


def apt_dir(tmp_path: Path, sources: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    for name, text in sources.items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return tmp_path


needs_keyring = pytest.mark.skipif(not KEYRING.is_file(), reason="debian-archive-keyring absent")


@needs_keyring
def test_a_host_with_only_ubuntu_sources_bootstraps_from_debian_with_debians_keys(
    tmp_path: Path,
) -> None:
    out = dry_run(apt_dir(tmp_path, {"ubuntu.sources": UBUNTU}))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("bookworm ROOT http://deb.debian.org/debian")
    assert f"--keyring={KEYRING}" in out.stdout
    assert "no Debian bookworm source" in out.stderr  # said, not silently chosen
    assert "ubuntu" not in out.stdout


@needs_keyring
def test_the_hosts_own_debian_mirror_wins_and_the_variable_over_both(tmp_path: Path) -> None:
    apt = apt_dir(tmp_path, {"ubuntu.sources": UBUNTU, "debian.sources": DEBIAN})
    out = dry_run(apt)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ROOT http://mirror.example.org/debian")
    chosen = dry_run(apt, MLOPS_DEBIAN_MIRROR="http://other.example.org/debian")
    assert chosen.stdout.strip().endswith("ROOT http://other.example.org/debian")
    one_line = tmp_path / "classic"
    one_line.mkdir()
    (one_line / "sources.list").write_text("deb http://classic.example.org/debian bookworm main\n")
    classic = dry_run(one_line)
    assert classic.stdout.strip().endswith("ROOT http://classic.example.org/debian")
