"""`mousebehav sync` contract: CSV columns, offsets with their sign, timestamp files, clear errors."""
import csv, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from mousebehav.sync import SYNC_COLUMNS, make_test_copies, write_timestamps, read_sync
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
