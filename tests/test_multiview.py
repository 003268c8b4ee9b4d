"""`mousebehav calib` contract: camera table, reprojection report flagging sleap-4cam's broken `side` camera."""
import json, re

from mousebehav.cli import main


def test_calib_flags_broken_camera(data_dir, tmp_path, capsys):
    s = data_dir/'sleap-4cam'
    pts = [str(s/f'minimal_{v}_proofread.analysis.h5') for v in ('back', 'mid', 'side', 'top')]
    assert main(['calib', str(s/'calibration.toml'), '--points', *pts, '--json', str(tmp_path/'c.json')]) == 0
    out = capsys.readouterr().out
    assert "camera 'side' disagrees with the others" in out
    rep = json.loads((tmp_path/'c.json').read_text())['report']
    assert [r['camera'] for r in rep] == ['back', 'mid', 'side', 'top']
    assert [r['flagged'] for r in rep] == [False, False, True, False]
    good = [r['median_px'] for r in rep if not r['flagged']]
    assert max(good) < 10 and 80 < rep[2]['median_px'] < 110


def test_calib_dannce_and_errors(data_dir, tmp_path, capsys):
    assert main(['calib', str(data_dir/'dannce-5cam')]) == 0
    out = capsys.readouterr().out
    assert [l.split()[0] for l in out.splitlines() if re.match(r'\s*cam\d', l)] == ['cam1', 'cam2', 'cam3', 'cam4', 'cam5']
    assert main(['calib', str(tmp_path/'none.toml')]) == 2
    assert 'no such calibration file' in capsys.readouterr().err
    (tmp_path/'x.toml').write_text('[cam_0\n')
    assert main(['calib', str(tmp_path/'x.toml')]) == 2
    assert 'not valid TOML' in capsys.readouterr().err


# --- 3D features, the synthetic scene, `bench views` ---------------------------------------------------------------
import argparse
from pathlib import Path

import numpy as np
import pytest

import mousebehav.multiview as MV
from mousebehav.features import load_features
from mousebehav.multiview import (THREED_COLUMNS, HullGrid, SessionError, extract_3d, hull_top, read_anipose_calibration,
                                  read_dannce_calibration, render_scene)
from mousebehav.store import read_attrs
from mousebehav.sync import CameraSync, SyncResult


@pytest.fixture(scope='module')
def dannce_cams(data_dir):
    return read_dannce_calibration(data_dir/'dannce-5cam', names=list('RLEUS'))


@pytest.fixture(scope='module')
def small_scene(dannce_cams, tmp_path_factory):
    "120 frames, five DANNCE views at 0.3 × their resolution, videos written, exact masks."
    sc = render_scene(dannce_cams, n_frames=120, scale=0.3, sizes=[(1328, 1048)] * 5, occlusion=0.1, seed=21, name='small')
    vids = sc.write_videos(tmp_path_factory.mktemp('small')/'videos')
    return sc, vids, [sc.segmentation(v, p) for v, p in enumerate(vids)]


def test_extract_3d_rearing_height_on_the_synthetic_scene(small_scene, tmp_path):
    sc, vids, segs = small_scene
    F = load_features(extract_3d(vids, sc.cameras, tmp_path, segmentation=segs, progress=False))
    c = list(THREED_COLUMNS)
    assert F.backbone == '3d' and F.attrs['video_name'] == vids[0].name and F.frame_index.tolist() == list(range(120))
    ok = F.detected & (F.features[:, c.index('n_views')] >= 2)
    err = F.features[:, c.index('rearing_height')] - sc.top
    assert ok.mean() > 0.95 and np.mean(np.abs(err[ok]) <= 5) >= 0.95, (ok.mean(), np.abs(err[ok]).max())
    assert np.median(np.linalg.norm(F.features[ok, :3] - sc.centroid[ok], axis=1)) < 3
    h = F.features[:, c.index('height')]; assert np.allclose(h, F.features[:, 2], atol=1e-3)    # DANNCE's floor is z = 0
    import h5py
    with h5py.File(F.path) as f:
        assert f['view_status'].shape == (120, 5) and f['view_centroids'].shape == (120, 5, 2) and f['top_point'].shape == (120, 3)
        occluded = np.array([[sc.is_occluded(v, k) for v in range(5)] for k in range(120)])
        assert (f['view_status'][:] == np.where(occluded, 3, 0)).all()        # an occluded view is marked 'no mouse'
    top_views = F.features[ok, c.index('top_views')]; nv = F.features[ok, c.index('n_views')]
    assert (top_views <= nv).all() and (top_views >= np.minimum(nv, 4)).all()


def test_hull_needs_two_views_and_other_floors(small_scene, data_dir):
    sc, _, _ = small_scene
    m = [sc.mask(v, 5) for v in range(5)]
    assert np.isnan(hull_top([m[0], None, None, None, None], sc.cameras, sc.centroid[5])[0])
    h, n, p = hull_top(m, sc.cameras, sc.centroid[5])
    assert abs(h - sc.top[5]) <= 5 and n >= 4 and np.isfinite(p).all()
    # the same scene on a tilted floor: a rig whose floor is not z = 0 (as under the SLEAP cameras)
    cams = [c for c in read_anipose_calibration(data_dir/'sleap-4cam'/'calibration.toml') if c.name != 'side']
    rig = MV.sleap_rig(data_dir/'sleap-4cam')
    s2 = render_scene(cams, n_frames=60, scale=0.3, origin=rig['origin'], up=rig['up'], radius=rig['radius'], seed=3)
    floor = float(s2.origin @ s2.up)
    errs = [hull_top([s2.mask(v, k) for v in range(3)], s2.cameras, s2.centroid[k], s2.up, floor)[0] - s2.top[k] for k in range(0, 60, 6)]
    assert np.all(np.array(errs) > -1.5), errs                  # never below the mouse…
    assert np.median(errs) > 3, errs                            # …and loose from three cameras that all look down


def test_extract_3d_resumes_and_refuses_other_settings(small_scene, tmp_path, monkeypatch):
    sc, vids, segs = small_scene
    full = load_features(extract_3d(vids, sc.cameras, tmp_path/'full.h5', segmentation=segs, progress=False))
    monkeypatch.setattr(MV, 'CHECKPOINT', 25)
    calls, real = [0], MV.hull_top
    def flaky(*a, **k):
        calls[0] += 1
        if calls[0] == 60: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(MV, 'hull_top', flaky)
    out = tmp_path/'run.h5'
    with pytest.raises(KeyboardInterrupt): extract_3d(vids, sc.cameras, out, segmentation=segs, progress=False)
    assert not out.exists() and read_attrs(tmp_path/'run.partial.h5')['n_done'] == 50
    monkeypatch.setattr(MV, 'hull_top', real)
    F = load_features(extract_3d(vids, sc.cameras, out, segmentation=segs, progress=False))
    assert np.array_equal(F.features, full.features) and not (tmp_path/'run.partial.h5').exists()
    assert extract_3d(vids, sc.cameras, out, segmentation=segs, progress=False) == out          # done: nothing to do
    with pytest.raises(SessionError, match='other settings .*floor'):
        extract_3d(vids, sc.cameras, out, segmentation=segs, floor=10.0, progress=False)
    with pytest.raises(SessionError, match='other settings .*hull'):
        extract_3d(vids, sc.cameras, out, segmentation=segs, grid=HullGrid(dz=1.0), progress=False)


def test_extract_3d_with_imbs_on_the_videos(small_scene, tmp_path):
    "The segmentation run from the videos (masks kept only while the store is made), the views on their own clocks."
    sc0, _, _ = small_scene
    offs, drs = [0, 3.0, -2.0, 4.5, 1.0], [1, 1.001, 1, 0.999, 1]
    sc = render_scene(sc0.cameras, n_frames=150, scale=1.0, occlusion=0.0, offsets=offs, drifts=drs, seed=22, name='imbs',
                      sizes=[c.size for c in sc0.cameras])
    vids = sc.write_videos(tmp_path/'videos')
    sync = SyncResult([CameraSync(str(p), 30.0, sc.view_frames(v), offs[v], offs[v] / 30, drs[v], 1.0, 'known', 30.0) for v, p in enumerate(vids)])
    F = load_features(extract_3d(vids, sc.cameras, tmp_path/'out', sync=sync, progress=False))
    c = list(THREED_COLUMNS)
    assert F.attrs['segmentation'] == 'imbs' and not list((tmp_path/'out').glob('.*'))   # the masks' cache is gone
    ok = F.detected
    err = np.abs(F.features[:, c.index('rearing_height')] - sc.top)
    assert ok.mean() > 0.9 and np.median(err[ok]) < 5 and np.mean(err[ok] <= 10) > 0.85, (ok.mean(), np.median(err[ok]))
    with pytest.raises(SessionError, match='segmentation must be a method'):
        extract_3d(vids, sc.cameras, tmp_path/'x', segmentation='watershed', progress=False)
    seg = sc.segmentation(1, vids[1])
    with pytest.raises(SessionError, match='the segmentation given for it is of'):
        extract_3d(vids, sc.cameras, tmp_path/'x', segmentation=[seg] * 5, progress=False)


def test_bench_views_command(tmp_path, capsys):
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(); MV.add_bench(sub)
    args = ap.parse_args(['views', '--json', str(tmp_path/'v.json'), '--frames', '150', '--dannce-frames', '75', '--scale', '0.25', '--no-sleap'])
    assert args.func(args) == 0
    res = __import__('json').loads((tmp_path/'v.json').read_text())
    for k in ('height_within_5mm', 'fused_accuracy', 'best_single_view_accuracy', 'worst_drop_one_view_accuracy'):
        assert 0 <= res['synthetic'][k] <= 1, k
    for k in ('height_in_range', 'p99_jump_mm', 'drop_one_view_median_mm'): assert np.isfinite(res['dannce'][k]), k
    assert 5 <= res['dannce']['frames'] <= 15 and set(res['dannce']['drop_one_view_per_view_mm']) == set('RLEUS')
    assert res['synthetic']['height_within_5mm'] >= 0.9
    out = capsys.readouterr().out
    assert 'synthetic dannce: height within 5 mm' in out and 'dannce: height in range' in out
