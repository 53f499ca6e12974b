"""`esxcap extcap install`: which folder (what tshark -G folders says for 4.0 and for 4.2+, or
--wireshark-dir), a launcher that runs this interpreter with the inventory pinned, and a file that is not
ours is never replaced or removed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clirun import esxcap, isolated_env

from esxcap.cli.extcap_install import folder_from_tshark, launcher_text

FOLDERS_4_0 = (
    "Temp:\t/tmp\nPersonal configuration:\t/home/ann/.config/wireshark\nExtcap path:\t/usr/lib/x/extcap\n"
)
FOLDERS_4_2 = (
    "Personal configuration:\t/home/ann/.config/wireshark\n"
    "Personal Extcap path:\t/home/ann/.local/lib/wireshark/extcap\n"
    "Global Extcap path:\t/usr/lib/x/extcap\n"
)


def test_the_folder_is_the_one_tshark_names() -> None:
    assert folder_from_tshark(FOLDERS_4_2) == Path("/home/ann/.local/lib/wireshark/extcap")
    assert folder_from_tshark(FOLDERS_4_0) == Path("/home/ann/.config/wireshark/extcap")
    assert folder_from_tshark("Temp:\t/tmp\n") is None


def test_the_launcher_runs_this_interpreter_with_the_inventory(tmp_path: Path) -> None:
    inventory = tmp_path / "it's inventory.yaml"
    inventory.write_text("hosts:\n  esx01: {hostname: 10.0.0.11}\n", encoding="utf-8")
    launcher = tmp_path / "esxcap"
    launcher.write_text(launcher_text(sys.executable, inventory, windows=False), encoding="utf-8")
    launcher.chmod(0o700)
    listed = subprocess.run(
        [str(launcher), "--extcap-interfaces"], capture_output=True, text=True, check=True
    )
    assert "interface {value=esxcap-esx01}{display=ESXi esx01 (10.0.0.11) via esxcap}" in listed.stdout
    batch = launcher_text(r"C:\Python\python.exe", Path(r"C:\esx\inv.yaml"), windows=True)
    assert batch.endswith('"C:\\Python\\python.exe" -m esxcap.cli.extcap %*\r\n')
    assert 'set "ESXCAP_INVENTORY=C:\\esx\\inv.yaml"' in batch


def test_install_into_a_given_folder_and_never_over_a_foreign_file(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  esx01: {hostname: 10.0.0.11}\n", encoding="utf-8")
    folder = tmp_path / "extcap"
    result = esxcap("-i", str(inventory), "extcap", "install", "--wireshark-dir", str(folder), env=env)
    assert result.code == 0 and f"installed {folder / 'esxcap'}" in result.stderr
    assert (folder / "esxcap").stat().st_mode & 0o777 == 0o700
    assert esxcap("extcap", "uninstall", "--wireshark-dir", str(folder), env=env).code == 0
    foreign = folder / "esxcap"
    foreign.write_text("#!/bin/sh\necho someone else's\n", encoding="utf-8")
    for command in ("install", "uninstall"):
        refused = esxcap("-i", str(inventory), "extcap", command, "--wireshark-dir", str(folder), env=env)
        assert refused.code == 2 and "not an esxcap launcher" in refused.stderr
    assert foreign.read_text(encoding="utf-8") == "#!/bin/sh\necho someone else's\n"
    no_inventory = esxcap("extcap", "install", "--wireshark-dir", str(tmp_path / "x"), env=env)
    assert no_inventory.code == 2 and "no inventory" in no_inventory.stderr


def test_status_and_uninstall_find_the_folder_install_was_given(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, PATH="/nonexistent")  # no tshark: status reads the folder only
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  esx01: {hostname: 10.0.0.11}\n", encoding="utf-8")
    folder = tmp_path / "wireshark" / "extcap"
    installed = esxcap("-i", str(inventory), "extcap", "install", "--wireshark-dir", str(folder), env=env)
    assert installed.code == 0, installed.stderr
    status = esxcap("extcap", "status", env=env)
    assert status.code == 0 and f"launcher: {folder / 'esxcap'} (installed;" in status.stdout
    removed = esxcap("extcap", "uninstall", env=env)
    assert removed.code == 0 and f"removed {folder / 'esxcap'}" in removed.stderr
    assert not (folder / "esxcap").exists()
    gone = esxcap("extcap", "status", env=env)
    assert gone.code == 1 and "(not installed;" in gone.stdout and str(folder) not in gone.stdout
