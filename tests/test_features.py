"""The `mousebehav extract` command-line contract, on a short clip of real video."""
import json, os, subprocess, sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch_file
from mousebehav.features import features_path, load_features
from mousebehav.video import iter_frames, write_video


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp('clip')
    src = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
    return write_video(d/'of16.avi', (f for _, f in iter_frames(src, stop=16)), fps=30)


def test_extract_cli_writes_store(clip, tmp_path, capsys):
    assert main(['extract', str(clip), '--out', str(tmp_path), '--quiet', '--batch-size', '8']) == 0
    p = features_path(tmp_path, clip)
    assert str(p) in capsys.readouterr().out
    F = load_features(p)
    assert F.features.shape == (16, 1280) and F.features.dtype == np.float32
    assert F.frame_index.tolist() == list(range(16))
    assert F.backbone == 'efficientnet_lite0' and F.fps == 30.0
    assert F.attrs['segmentation'] == 'imbs' and F.attrs['complete'] is True
    assert F.bbox.shape == (16, 4) and F.detected.dtype == bool
    assert not list(tmp_path.glob('*.partial.h5'))


def test_extract_cli_crop_stride_float16_no_segmentation(clip, tmp_path):
    rc = main(['extract', str(clip), '--out', str(tmp_path), '--quiet', '--crop', '100,50,400,350',
               '--stride', '3', '--dtype', 'float16', '--segmentation', 'none'])
    assert rc == 0
    p = features_path(tmp_path, clip, '100,50,400,350')
    assert p.name == 'of16__100-50-400-350.h5'
    F = load_features(p)
    assert F.features.shape == (6, 1280) and F.features.dtype == np.float16
    assert F.frame_index.tolist() == list(range(0, 16, 3))
    assert (F.bbox == [0, 0, 300, 300]).all() and F.detected.all()


def test_extract_cli_refuses_other_settings(clip, tmp_path, capsys):
    assert main(['extract', str(clip), '--out', str(tmp_path), '--quiet', '--segmentation', 'none']) == 0
    assert main(['extract', str(clip), '--out', str(tmp_path), '--quiet', '--segmentation', 'mog2']) == 2
    err = capsys.readouterr().err
    assert 'other settings' in err and 'segmentation' in err


def test_extract_cli_bad_input(tmp_path, capsys):
    assert main(['extract', str(tmp_path/'missing.mp4'), '--out', str(tmp_path), '--quiet']) == 2
    assert 'missing.mp4' in capsys.readouterr().err
    assert main(['extract', str(tmp_path/'x.mp4'), '--out', str(tmp_path), '--backbone', 'nonet', '--quiet']) == 2


def test_extract_console_script(clip, tmp_path):
    r = subprocess.run(['mousebehav', 'extract', str(clip), '--out', str(tmp_path), '--quiet', '--segmentation', 'none', '--batch-size', '6'],
                       capture_output=True, text=True, env=os.environ | {'PATH': f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    with h5py.File(features_path(tmp_path, clip), 'r') as f:
        assert f['features'].shape == (16, 1280) and f.attrs['complete']
        assert json.loads(f.attrs['segmentation_params']) == {}


def test_extract_cli_panels_of_one_video(tmp_path):
    v = fetch_file('bsoid-panels', 'orient_R_hstacked.mp4')  # 24 frames, three 450x360 panels
    rc = main(['extract', f'{v}@0,0,450,360', f'{v}@900,0,1350,360', '--out', str(tmp_path), '--quiet',
               '--stride', '4', '--segmentation', 'none'])
    assert rc == 0
    a = load_features(features_path(tmp_path, v, '0,0,450,360'))
    b = load_features(features_path(tmp_path, v, '900,0,1350,360'))
    assert a.features.shape == b.features.shape == (6, 1280) and a.fps == 15.0
    assert a.attrs['crop'] == '0,0,450,360' and not np.array_equal(a.features, b.features)


def test_dask_local_cluster_equals_serial(tmp_path):
    from dask.distributed import Client, LocalCluster
    from mousebehav.features import extract_many
    v = str(fetch_file('bsoid-panels', 'orient_R_hstacked.mp4'))
    items = [(v, '0,0,450,360'), (v, '450,0,900,360')]
    kw = dict(stride=4, batch_size=4, progress=False)
    ser = extract_many(items, tmp_path/'serial', **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, Client(cl) as c:
        dsk = extract_many(items, tmp_path/'dask', client=c, **kw)
    assert [p.name for p in ser] == [p.name for p in dsk]
    for a, b in zip(ser, dsk):
        with h5py.File(a, 'r') as fa, h5py.File(b, 'r') as fb:
            assert sorted(fa) == sorted(fb)
            for k in fa: np.testing.assert_array_equal(fa[k][:], fb[k][:])
            assert fa.attrs['segmentation_params'] == fb.attrs['segmentation_params']
