"`mousebehav segment --report DIR` (quality report of the segmentation) and the setup / real-video rows of `bench segment`."
import json, os, subprocess
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from mousebehav.data import fetch_file, data_dir, DATA_ENV
from mousebehav.synthetic import SETUPS

if data_dir() is None and (Path(__file__).parent / '../../shared/data').exists():
    os.environ[DATA_ENV] = str((Path(__file__).parent / '../../shared/data').resolve())

OF = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
PANEL = fetch_file('bsoid-panels', 'locomote_hstacked.mp4')


def run(*args):
    return subprocess.run(['mousebehav', *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize('video,extra,keep_mask', [
    (OF, (), False),                                                   # masks only for the report, not in --out
    (PANEL, ('--crop', '450,0,900,360', '--store-mask'), True),        # a panel of a B-SOiD video, masks kept
])
def test_report_matches_the_segmentation(tmp_path, video, extra, keep_mask):
    out, rep_dir = tmp_path / 's.h5', tmp_path / 'rep'
    r = run('segment', video, '--out', out, '--max-frames', 50, '--quiet', '--report', rep_dir, *extra)
    assert r.returncode == 0, r.stderr
    rep = json.loads((rep_dir / 'report.json').read_text())
    with h5py.File(out) as f:
        assert ('mask' in f) == keep_mask
        bb = f['bbox'][:]
    found = int((bb[:, 0] >= 0).sum())
    assert (rep['frames'], rep['found']) == (50, found)
    assert rep['share_found'] == pytest.approx(found / 50)
    assert rep['masks'] is True and rep['method'] == 'imbs' and Path(rep['video']) == Path(video)
    assert rep['verdict'] in r.stdout and f'mouse found in {found}' in r.stdout
    sheet = cv2.imread(str(rep_dir / 'contact_sheet.png'))
    assert sheet is not None and sheet.ndim == 3 and sheet.shape[0] > 100 and sheet.shape[1] > 300
    assert sorted(p.name for p in rep_dir.iterdir()) == ['contact_sheet.png', 'report.json']   # no partial files
    assert sorted(p.name for p in tmp_path.iterdir()) == ['rep', 's.h5']


@pytest.mark.parametrize('crop', ['0,0,30,30', '610,450,640,480'])   # arena corners the mouse never reaches
def test_report_of_a_video_without_a_mouse(tmp_path, crop):
    rep_dir = tmp_path / 'rep'
    r = run('segment', OF, '--out', tmp_path / 's.h5', '--max-frames', 40, '--quiet', '--crop', crop, '--report', rep_dir)
    assert r.returncode == 0, r.stderr
    rep = json.loads((rep_dir / 'report.json').read_text())
    assert (rep['found'], rep['share_found'], rep['ok']) == (0, 0.0, False)
    assert 'no mouse' in rep['verdict'] and rep['verdict'] in r.stdout
    assert 'mouse found in 0' in r.stdout and (rep_dir / 'contact_sheet.png').stat().st_size > 0


def test_report_with_a_missing_output_folder_is_a_clear_error(tmp_path):
    r = run('segment', OF, '--out', tmp_path / 'nofolder' / 's.h5', '--max-frames', 10, '--quiet', '--report', tmp_path / 'rep')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'does not exist' in r.stderr
    assert not (tmp_path / 'rep' / 'report.json').exists()


def test_bench_segment_setups_and_real_rows(tmp_path):
    out = tmp_path / 'b.json'
    r = run('bench', 'segment', '--json', out, '--size', '160x120', '--frames', 30, '--methods', 'imbs',
            '--memory-frames', 'none', '--real-frames', 20)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert set(d) >= {'results', 'setups', 'real', 'agreement_with_reference', 'memory', 'notes'}
    assert {'setups', 'real'} <= set(d['notes'])
    assert [x['setup'] for x in d['setups']] == list(SETUPS)
    for x in d['setups']:
        assert (x['method'], x['width'], x['height'], x['frames']) == ('imbs', 640, 480, 30)
        assert 0 <= x['iou'] <= 1 and 0 <= x['found'] <= 1
    assert d['real'][-1]['video'] == 'overall' and len(d['real']) >= 2
    for x in d['real']:
        assert set(x) == {'video', 'frames', 'found', 'keypoints_in_mask', 'keypoints_in_box', 'tightness'}
        assert 0 <= x['found'] <= x['frames']
    assert [x['frames'] for x in d['real'][:-1]] == [20] * (len(d['real']) - 1)
    assert d['real'][-1]['frames'] == 20 * (len(d['real']) - 1)
    assert 'IoU still' in r.stdout and 'kp in mask' in r.stdout
    r = run('bench', 'segment', '--real-frames', 0)
    assert r.returncode == 2 and '--real-frames' in r.stderr


def test_extract_writes_the_reports_first(tmp_path):
    "extract --report DIR: each video's (and panel's) segmentation report over its first --report-s s, then the stores."
    from mousebehav.video import probe
    rep_dir, out = tmp_path / 'rep', tmp_path / 'feats'
    r = run('extract', OF, f'{PANEL}@450,0,900,360', '--backbone', 'posture', '--out', out, '--report', rep_dir,
            '--report-s', 2, '--quiet')
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in rep_dir.iterdir()) == [f'{Path(PANEL).stem}@450_0_900_360', Path(OF).stem]
    for name, video in ((Path(OF).stem, OF), (f'{Path(PANEL).stem}@450_0_900_360', PANEL)):
        rep = json.loads((rep_dir / name / 'report.json').read_text())
        assert rep['frames'] == round(2 * probe(video).fps) and rep['verdict'] in r.stdout
        assert (rep_dir / name / 'contact_sheet.png').stat().st_size > 1000
    assert len(list(out.glob('*.h5'))) == 2
    r = run('extract', OF, '--backbone', 'posture', '--out', tmp_path / 'f2', '--report', rep_dir, '--segmentation', 'none', '--quiet')
    assert r.returncode == 2 and 'needs a segmentation' in r.stderr and 'Traceback' not in r.stderr
