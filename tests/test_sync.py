"""`mousebehav sync` contract: CSV columns, offsets with their sign, timestamp files, clear errors."""
import csv, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from mousebehav.sync import SYNC_COLUMNS, make_test_copies, write_timestamps, read_sync, video_signals
from mousebehav.video import iter_frames, write_video
from mousebehav.cli import main

EXE = shutil.which('mousebehav') or str(Path(sys.executable).parent/'mousebehav')


def mb(*args):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=dict(os.environ), timeout=300)


@pytest.fixture(scope='module')
def copies(data_dir, tmp_path_factory):
    "Copies of DANNCE view R (hardware-synchronised source) trimmed from frames 0, 37 and 121; 400 frames, 1/4 size."
    out = tmp_path_factory.mktemp('sync')
    paths = make_test_copies(data_dir/'dannce-5cam'/'CameraR_31500.mp4', out, [0, 37, 121], n_frames=400, scale=0.25)
    return dict(zip([0, 37, 121], paths)), out


def rows(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


def test_sync_cli_csv_columns_and_offsets(copies):
    (v, out) = copies
    csv_path = out/'sync.csv'
    r = mb('sync', v[37], v[0], v[121], '--out', csv_path, '--cache', out/'cache')
    assert r.returncode == 0, r.stderr
    with open(csv_path, newline='') as f: header = next(csv.reader(f))
    assert header == SYNC_COLUMNS == ['video', 'offset_frames', 'offset_s', 'drift', 'confidence', 'method']
    got = rows(csv_path)
    assert [g['video'] for g in got] == [str(v[37]), str(v[0]), str(v[121])]
    # offset_frames = index in this video of the reference's (first video's) frame 0
    assert [round(float(g['offset_frames'])) for g in got] == [0, 37, -84]
    assert abs(float(got[2]['offset_s']) - (-84 / 120)) < 0.5 / 120
    assert [g['method'] for g in got] == ['reference', 'motion', 'motion']
    assert all(0 <= float(g['confidence']) <= 1 for g in got)
    assert abs(float(got[1]['drift']) - 1) < 1e-3
    assert not list(out.glob('.*partial*'))      # written atomically
    assert [round(c.offset_frames) for c in read_sync(csv_path)] == [0, 37, -84]


def test_sync_cli_timestamps_with_dropped_frames(copies):
    (v, out) = copies
    keep = [i for i in range(10, 400) if i not in (50, 51, 200)]   # copy of k0 from frame 10, 3 frames dropped
    want = set(keep)
    drops = write_video(out/'drops.avi', (f for i, f in iter_frames(v[0]) if i in want), fps=120)
    write_timestamps(out/'drops.timestamps.csv', 500.0 + np.asarray(keep) / 120)
    (out/'ref.txt').write_text('\n'.join(f'{500.0 + i / 120:.6f}' for i in range(400)))
    csv_path = out/'sync_ts.csv'
    r = mb('sync', v[0], drops, '--out', csv_path, '--method', 'timestamps', '--timestamps', out/'ref.txt', out/'drops.timestamps.csv')
    assert r.returncode == 0, r.stderr
    got = rows(csv_path)
    assert abs(float(got[1]['offset_frames']) - (-10)) < 0.01 and got[1]['method'] == 'timestamps'
    assert '3 dropped frame slot(s): [40, 41, 190]' in r.stdout


def test_sync_cli_errors(copies, capsys):
    (v, out) = copies
    assert main(['sync', str(v[0]), str(out/'missing_view.avi'), '--out', str(out/'x.csv'), '--quiet']) == 2
    assert 'missing_view.avi: no such video' in capsys.readouterr().err
    assert main(['sync', str(v[0]), str(v[37]), '--out', str(out/'x.csv'), '--method', 'flash', '--quiet',
                 '--cache', str(out/'cache')]) == 2
    assert 'no flash found' in capsys.readouterr().err
    assert main(['sync', str(v[0]), '--out', str(out/'x.csv'), '--quiet']) == 2
    assert 'at least two videos' in capsys.readouterr().err
    assert not (out/'x.csv').exists()


# The signal cache is keyed by each file's content and the settings, never by its name; a stale entry is rebuilt.

def raw_copy(src, dst, start, n=120):
    "Frames start…start+n-1 of `src` as uncompressed video: every such copy has the same size in bytes."
    return write_video(dst, (f for i, f in iter_frames(src, start=start, stop=start + n)), fps=120, fourcc='I420')


def test_signal_cache_two_cam1_in_two_session_folders(copies, tmp_path):
    (v, out) = copies
    (tmp_path/'day1').mkdir(); (tmp_path/'day2').mkdir()
    a, b = shutil.copy(v[0], tmp_path/'day1'/'cam1.avi'), shutil.copy(v[37], tmp_path/'day2'/'cam1.avi')
    cache = tmp_path/'cache'
    sa, sb = video_signals(a, cache_dir=cache), video_signals(b, cache_dir=cache)
    assert len(list(cache.glob('*.npz'))) == 2
    assert np.array_equal(sa.motion, video_signals(v[0]).motion) and np.array_equal(sb.motion, video_signals(v[37]).motion)
    assert np.array_equal(video_signals(a, cache_dir=cache).motion, sa.motion)   # each finds its own entry again


def test_signal_cache_file_replaced_in_place_is_rebuilt(copies, tmp_path):
    "Same name, same size, same modification time, other recording: new signals, never the old entry's."
    (v, out) = copies
    x, y = raw_copy(v[0], tmp_path/'x.avi', 0), raw_copy(v[0], tmp_path/'y.avi', 200)
    assert x.stat().st_size == y.stat().st_size
    cam = tmp_path/'cam1.avi'; cache = tmp_path/'cache'
    shutil.copy2(x, cam); sx = video_signals(cam, cache_dir=cache)
    t = cam.stat().st_mtime_ns
    shutil.copy2(y, cam); os.utime(cam, ns=(t, t))
    sy = video_signals(cam, cache_dir=cache)
    assert np.array_equal(sy.motion, video_signals(y).motion) and not np.array_equal(sy.motion, sx.motion)


def test_signal_cache_follows_the_content_not_the_path(copies, tmp_path, monkeypatch):
    "A video moved to another folder under another name is found in the cache (no decoding at all)."
    (v, out) = copies
    cache = tmp_path/'cache'; first = shutil.copy(v[37], tmp_path/'session.avi')
    s = video_signals(first, cache_dir=cache)
    moved = shutil.move(first, tmp_path/'archive.avi')
    import mousebehav.sync as SY
    monkeypatch.setattr(SY, 'iter_batches', lambda *a, **k: pytest.fail('decoded again'))
    again = video_signals(moved, cache_dir=cache)
    assert np.array_equal(again.motion, s.motion) and again.video == str(moved)
    assert len(list(cache.glob('*.npz'))) == 1


def test_signal_cache_damaged_or_foreign_entry_is_rebuilt(copies, tmp_path):
    (v, out) = copies
    cache = tmp_path/'cache'
    want = video_signals(v[121], cache_dir=cache)
    (entry,) = cache.glob('*.npz')
    entry.write_bytes(entry.read_bytes()[:100])                          # cut short (a full disk, a killed run)
    assert np.array_equal(video_signals(v[121], cache_dir=cache).motion, want.motion)
    other = video_signals(v[0])                                           # an entry whose key is another file's
    np.savez(entry, key=np.array('another file'), fps=other.fps, motion=other.motion, brightness=other.brightness)
    assert np.array_equal(video_signals(v[121], cache_dir=cache).motion, want.motion)


def test_sync_cli_cache_with_a_view_replaced_in_place(copies, tmp_path):
    "`mousebehav sync --cache`: two `cam1.avi` of two folders, then one of them replaced by another recording."
    (v, out) = copies
    (tmp_path/'a').mkdir(); (tmp_path/'b').mkdir()
    ref, cam = shutil.copy(v[0], tmp_path/'a'/'cam1.avi'), tmp_path/'b'/'cam1.avi'
    shutil.copy2(v[37], cam)
    r = mb('sync', ref, cam, '--out', tmp_path/'s.csv', '--cache', tmp_path/'cache', '--quiet')
    assert r.returncode == 0, r.stderr
    assert round(float(rows(tmp_path/'s.csv')[1]['offset_frames'])) == -37
    t = cam.stat().st_mtime_ns; shutil.copy(v[121], cam); os.utime(cam, ns=(t, t))
    r = mb('sync', ref, cam, '--out', tmp_path/'s.csv', '--cache', tmp_path/'cache', '--quiet')
    assert r.returncode == 0, r.stderr
    assert round(float(rows(tmp_path/'s.csv')[1]['offset_frames'])) == -121


def test_bench_copies_are_reused_only_for_the_same_source_and_settings(data_dir, tmp_path):
    "`bench sync --work DIR` keeps its trimmed copies; a run with other settings must not pick up copies of the last one."
    from mousebehav.sync import _bench_copies
    from mousebehav.video import probe
    src = data_dir/'dannce-5cam'/'CameraR_31500.mp4'
    a = _bench_copies(src, tmp_path, [0, 5], [None, None], 40, 0.1)
    assert [probe(p).frame_count for p in a] == [40, 40]
    t = [p.stat().st_mtime_ns for p in a]
    assert _bench_copies(src, tmp_path, [0, 5], [None, None], 40, 0.1) == a and [p.stat().st_mtime_ns for p in a] == t
    b = _bench_copies(src, tmp_path, [0, 5], [None, None], 60, 0.1)              # more frames: new copies
    assert [probe(p).frame_count for p in b] == [60, 60] and [probe(p).frame_count for p in a] == [40, 40]
    other = tmp_path/'src'; other.mkdir()                                         # same name, other recording
    shutil.copy(data_dir/'dannce-5cam'/'CameraE_31500.mp4', other/'CameraR_31500.mp4')
    c = _bench_copies(other/'CameraR_31500.mp4', tmp_path, [0, 5], [None, None], 40, 0.1)
    assert c[0].parent != a[0].parent
