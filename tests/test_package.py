"""The installed package from outside Jupyter: imports, console script, data registry and video CLI contracts."""
import importlib, json, os, shutil, subprocess, sys
from pathlib import Path

import cv2
import pytest

from mousebehav.data import datasets

ROOT = Path(__file__).resolve().parent.parent
EXE = shutil.which('mousebehav') or str(Path(sys.executable).parent/'mousebehav')


def mb(*args, env=None, check=False):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=check, timeout=300)


def test_every_module_imports():
    mods = [p.stem for p in (ROOT/'mousebehav').glob('*.py') if not p.stem.startswith('_')]
    assert {'data', 'video', 'cli'} <= set(mods)
    for m in mods: importlib.import_module(f'mousebehav.{m}')


def test_help_lists_subcommands():
    r = mb('--help'); assert r.returncode == 0, r.stderr
    for cmd in ['data', 'info', 'bench']: assert cmd in r.stdout


def test_console_script_installed():
    exe = shutil.which('mousebehav')
    assert exe, 'console script `mousebehav` not on PATH'
    r = subprocess.run([exe, '--version'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith('mousebehav ')


def test_data_fetch_offline_and_tampered(data_dir, tmp_path):
    r = mb('data', 'fetch', 'bsoid-panels'); assert r.returncode == 0, r.stderr
    assert '11 files verified' in r.stdout
    copy = tmp_path/'bsoid-panels'; shutil.copytree(data_dir/'bsoid-panels', copy)
    with open(copy/'locomote_hstacked.mp4', 'r+b') as f: f.seek(5000); f.write(b'\0\0\0\0')
    r = mb('data', 'fetch', 'bsoid-panels', env={'MOUSEBEHAV_DATA_DIR': str(tmp_path)})
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert 'locomote_hstacked.mp4' in r.stderr and 'checksum mismatch' in r.stderr


def test_data_path_and_list(data_dir):
    r = mb('data', 'path', 'dlc-openfield'); assert r.returncode == 0
    assert Path(r.stdout.strip()) == (data_dir/'dlc-openfield').resolve()
    r = mb('data', 'list'); assert r.returncode == 0
    for name in datasets(): assert name in r.stdout


def _videos(data_dir):
    return sorted(p for p in data_dir.glob('*/*') if p.suffix in ('.mp4', '.avi'))


def test_info_matches_opencv_on_every_sample_video(data_dir):
    vids = _videos(data_dir)
    assert len(vids) >= 100
    r = mb('info', '--json', *vids); assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for v, row in zip(vids, rows):
        c = cv2.VideoCapture(str(v))
        assert (row['frame_count'], row['width'], row['height']) == (int(c.get(cv2.CAP_PROP_FRAME_COUNT)), int(c.get(3)), int(c.get(4))), v
        assert row['fps'] == pytest.approx(c.get(cv2.CAP_PROP_FPS))


def test_info_truncated_video(data_dir, tmp_path):
    "A cut MP4 has lost its index: a clear error. A cut AVI keeps its frames: they are used, with a warning."
    src = (data_dir/'dlc-openfield/m3v1mp4.mp4').read_bytes()
    bad = tmp_path/'cut.mp4'; bad.write_bytes(src[:len(src)//2])
    r = mb('info', bad)
    assert r.returncode == 2, r.stdout
    assert 'Traceback' not in r.stderr and str(bad) in r.stderr and 'corrupt or truncated' in r.stderr
    src = (data_dir/'bsoid-clips/group10_example_4.avi').read_bytes()
    cut = tmp_path/'cut.avi'; cut.write_bytes(src[:len(src)//2])
    r = mb('info', cut)
    assert r.returncode == 0, r.stderr
    assert 'frames 11 ' in r.stdout and 'Traceback' not in r.stderr
    assert f'mousebehav: warning: {cut}: the header says 22 frames but the file holds only 11: it is truncated' in r.stderr


def test_download_path_through_pooch(data_dir, tmp_path, monkeypatch):
    "Online path: files come from their URL into the cache and are checked (a loopback server stands in for GitHub)."
    import functools, http.server, threading
    from mousebehav import data as D
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data_dir))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{srv.server_address[1]}'
    reg = [s.__class__(s.dataset, s.file, s.bytes, s.sha256, s.licence, f'{base}/{s.dataset}/{s.file}') for s in D.registry()]
    bad = [s.__class__(s.dataset, s.file, s.bytes, '0' * 64, s.licence, s.url) if s.file == 'm3v1mp4.mp4' else s for s in reg]
    monkeypatch.delenv('MOUSEBEHAV_DATA_DIR'); monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    try:
        monkeypatch.setattr(D, 'registry', lambda: reg)
        p = D.fetch('dlc-openfield')
        assert p.is_relative_to(tmp_path/'cache') and (p/'m3v1mp4.mp4').read_bytes() == (data_dir/'dlc-openfield'/'m3v1mp4.mp4').read_bytes()
        monkeypatch.setattr(D, 'registry', lambda: bad)
        (p/'m3v1mp4.mp4').unlink()
        with pytest.raises(D.DataError, match='m3v1mp4.mp4.*fails its checksum'): D.fetch('dlc-openfield')
        srv.shutdown(); srv.server_close()
        with pytest.raises(D.DataError, match='cannot download'): D.fetch('dlc-openfield')
    finally: srv.server_close()
