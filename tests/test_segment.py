"CLI contract of `mousebehav segment` and `mousebehav bench segment` (small real data, fast)."
import json, os, subprocess, sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch_file, data_dir, DATA_ENV

if data_dir() is None and (Path(__file__).parent / '../../shared/data').exists():
    os.environ[DATA_ENV] = str((Path(__file__).parent / '../../shared/data').resolve())

OF = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
PANEL = fetch_file('bsoid-panels', 'locomote_hstacked.mp4')


def run(*args):
    return subprocess.run(['mousebehav', *map(str, args)], capture_output=True, text=True)


def test_segment_writes_the_documented_hdf5(tmp_path):
    out = tmp_path / 'of.h5'
    r = run('segment', OF, '--out', out, '--max-frames', 30, '--store-mask', '--quiet')
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert {'bbox', 'area', 'centroid', 'frame_index', 'mask'} <= set(f)
        T = 30
        assert f['bbox'].shape == (T, 4) and f['bbox'].dtype == np.int32
        assert f['area'].shape == (T,) and f['centroid'].shape == (T, 2)
        assert f['frame_index'][:].tolist() == list(range(T))
        assert f['mask'].shape == (T, 480, 640) and f['mask'].dtype == bool
        bb, area, mask = f['bbox'][:], f['area'][:], f['mask'][:]
        assert f.attrs['method'] == 'imbs'
        params = json.loads(f.attrs['params'])
        assert params['method'] == 'imbs' and params['params']['n_samples'] == 10
    found = bb[:, 0] >= 0
    assert found.all()                                       # primed model: the mouse from frame 0
    assert ((bb[:, 2] > bb[:, 0]) & (bb[:, 3] > bb[:, 1])).all() and (bb[:, 2] <= 640).all() and (bb[:, 3] <= 480).all()
    assert (area == mask.sum((1, 2))).all()
    assert not list(tmp_path.glob('.*partial*'))


def test_segment_crop_method_and_no_mask(tmp_path):
    out = tmp_path / 'p.h5'
    r = run('segment', PANEL, '--out', out, '--crop', '450,0,900,360', '--method', 'mog2', '--max-frames', 20, '--quiet')
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert 'mask' not in f and f.attrs['method'] == 'mog2' and f.attrs['crop'] == '450,0,900,360'
        bb = f['bbox'][:]
    ok = bb[:, 0] >= 0
    assert (bb[~ok] == -1).all()                                # no mouse: a row of -1
    assert (bb[ok, 2] <= 450).all() and (bb[ok, 3] <= 360).all()  # coordinates inside the crop


def test_crop_outside_the_frame_is_a_clear_error(tmp_path):
    out = tmp_path / 'x.h5'
    r = run('segment', OF, '--out', out, '--crop', '0,0,700,100')
    assert r.returncode == 2
    assert 'outside the 640x480 frame' in r.stderr and 'Traceback' not in r.stderr
    assert not out.exists()
    assert main(['segment', str(OF), '--out', str(out), '--method', 'imbs', '--params', '{"fg_treshold": 1}', '--quiet']) == 2
    assert main(['segment', str(tmp_path / 'missing.mp4'), '--out', str(out)]) == 2


def test_bench_segment_json_format(tmp_path):
    out = tmp_path / 'b.json'
    r = run('bench', 'segment', '--json', out, '--size', '160x120', '--frames', 30, '--methods', 'imbs,mog2',
            '--memory-frames', '40,200', '--no-setups', '--no-real')
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert set(d) >= {'results', 'agreement_with_reference', 'memory'} and d['setups'] is None and d['real'] is None
    m = d['memory']      # peak memory of `segment --store-mask` on a real video, 40 vs 200 frames
    assert (m['frames_short'], m['frames_long'], m['width'], m['height']) == (40, 200, 640, 480)
    assert m['peak_mb_short'] > 0 and m['peak_mb_long'] > 0 and m['ratio'] == pytest.approx(m['peak_mb_long'] / m['peak_mb_short'])
    assert 'segment --store-mask' in r.stdout and 'ratio' in r.stdout
    assert [x['method'] for x in d['results']] == ['imbs', 'mog2']
    for x in d['results']:
        assert (x['width'], x['height'], x['frames']) == (160, 120, 30)
        assert x['fps'] > 0 and np.isfinite(x['peak_mb']) and 0 <= x['iou'] <= 1
    assert 'pybgs' in r.stdout or any(x['method'] == 'imbs_reference' for x in d['results'])
    assert run('bench', 'segment', '--size', '12x5').returncode == 2
    r = run('bench', 'segment', '--memory-frames', '300')
    assert r.returncode == 2 and 'mousebehav: error: --memory-frames' in r.stderr


def test_a_mouse_that_never_moves_is_found_in_every_frame():
    "B-SOiD `inactive` panels: the mouse sleeps through the clip, so only its look can find it."
    import cv2
    from mousebehav.segment import segment_video
    from mousebehav.video import iter_frames
    v = fetch_file('bsoid-panels', 'inactive_hstacked.mp4')
    for crop in ('0,0,450,360', '450,0,900,360', '900,0,1350,360'):
        s = segment_video(v, crop=crop, progress=False)
        assert (s.bbox[:, 0] >= 0).all(), crop
        for i, f in iter_frames(v, crop=crop, stride=20):
            d = (f.min(axis=2) < 70).astype(np.uint8)          # the black mouse, away from the walls
            d[:20] = d[-20:] = 0; d[:, :20] = d[:, -20:] = 0
            d = cv2.morphologyEx(d, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
            n, cc, st, _ = cv2.connectedComponentsWithStats(d)
            blob = cc == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
            x0, y0, x1, y1 = s.bbox[i]
            assert blob[y0:y1, x0:x1].sum() > 0.9 * blob.sum(), (crop, i)
            assert s.area[i] < 4 * blob.sum(), (crop, i)       # the mask is the mouse, not the arena


def test_the_look_is_chosen_per_video_and_recorded(tmp_path):
    "A dark scene (the SLEAP cameras: a white mouse on dark bedding) gets the bright look; B-SOiD and open field keep 'dark'."
    from mousebehav.segment import auto_look, Segmenter
    from mousebehav.video import read_frame
    white = fetch_file('sleap-4cam', 'minimal_top.mp4')
    assert auto_look(read_frame(white, 0)) == 'bright'
    assert auto_look(read_frame(PANEL, 0)) == 'dark' and auto_look(read_frame(OF, 0)) == 'dark'
    s = Segmenter('imbs', {'look': 'dark'}); s.update(read_frame(white, 0))
    assert s.look == 'dark'                                         # an explicit look is kept
    out = tmp_path / 'w.h5'
    r = run('segment', white, '--out', out, '--max-frames', 12, '--quiet')
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        p = json.loads(f.attrs['params'])
        assert p['look'] == 'bright' and p['post']['look'] == 'auto'  # the choice is in the store


def test_a_white_mouse_on_dark_bedding_is_in_the_mask():
    "The proofread SLEAP keypoints of the top view (tail excluded) lie in the mask and the box from the first frame on."
    from mousebehav.quality import score_video
    r = score_video(fetch_file('sleap-4cam', 'minimal_top.mp4'), fetch_file('sleap-4cam', 'minimal_top_proofread.analysis.h5'),
                    max_frames=20)
    assert r['found'] == 20
    assert r['keypoints_in_mask'] > 0.9 and r['keypoints_in_box'] > 0.95 and r['tightness'] < 10, r
