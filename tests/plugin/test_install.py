"""./install puts the plugin into the user's QGIS profile and enables it; --uninstall
removes it (run with --plugin-only in a throw-away HOME: no build, no daemon)."""

import configparser
import os
import subprocess

from conftest import REPO


def run_install(home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "EODISPATCH_"))}
    env["HOME"] = str(home)
    out = subprocess.run([str(REPO / "install"), "--plugin-only", *args], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_install_enables_and_uninstall_removes_the_plugin(tmp_path):
    root = tmp_path / ".local/share/QGIS/QGIS3"
    # An existing profile "work" is the default, with settings that must survive.
    (root / "profiles/work/QGIS").mkdir(parents=True)
    (root / "profiles/profiles.ini").write_text("[core]\ndefaultProfile=work\n")
    ini = root / "profiles/work/QGIS/QGIS3.ini"
    ini.write_text("[General]\nfoo=bar\n\n[PythonPlugins]\nprocessing=true\n")
    out = run_install(tmp_path)
    target = root / "profiles/work/python/plugins/eodispatch"
    assert (target / "metadata.txt").is_file() and (target / "core/client.py").is_file(), out
    assert not list(target.rglob("__pycache__"))
    cfg = configparser.ConfigParser()
    cfg.optionxform = str
    cfg.read(ini)
    assert cfg["PythonPlugins"]["eodispatch"] == "true"
    assert cfg["PythonPlugins"]["processing"] == "true" and cfg["General"]["foo"] == "bar"
    run_install(tmp_path)  # again: idempotent
    cfg.read(ini)
    assert ini.read_text().count("eodispatch=") == 1
    run_install(tmp_path, "--uninstall")
    assert not target.exists()
    cfg = configparser.ConfigParser()
    cfg.optionxform = str
    cfg.read(ini)
    assert "eodispatch" not in cfg["PythonPlugins"] and cfg["PythonPlugins"]["processing"] == "true"


def test_install_into_a_fresh_home_creates_the_default_profile(tmp_path):
    run_install(tmp_path)
    root = tmp_path / ".local/share/QGIS/QGIS3/profiles/default"
    assert (root / "python/plugins/eodispatch/__init__.py").is_file()
    assert "eodispatch=true" in (root / "QGIS/QGIS3.ini").read_text()
