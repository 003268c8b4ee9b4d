"""Motion stage: rhythms and directions recovered from constructed videos, stores that resume to the same rows,
combining stores of one video (and refusing the others), the `combine` and `bench motion` commands."""
import argparse
import copy
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from mousebehav.data import fetch_file
from mousebehav.features import FeatureError, features_path, load_features
from mousebehav.motion import (MOTION_COLUMNS, MotionError, add_bench, add_cli, band_columns, combine_stores,
                               extract_motion, motion_columns, oscillation_video)
from mousebehav.posture import extract_posture
from mousebehav.segment import save_segmentation, segment_video


def _frame(F) -> pd.DataFrame:
    return pd.DataFrame(F.features, columns=json.loads(F.attrs['columns']))


# (fps, oscillation Hz, direction from the head, in the back half?, body angle) → band and direction bins expected
FAMILY = [(30, 4, 90, False, 30, 'front_3-6Hz', {'dir_090', 'dir_270'}),
          (60, 12, 0, True, 120, 'back_10-15Hz', {'dir_000', 'dir_180'}),
          (15, 2, 45, False, -20, 'front_1-3Hz', {'dir_045', 'dir_225'}),
          (25, 8, 90, True, 75, 'back_6-10Hz', {'dir_090', 'dir_270'})]


@pytest.mark.parametrize('fps,freq,direction,back,body,band,dirs', FAMILY)
def test_rhythm_and_direction_come_back(tmp_path, fps, freq, direction, back, body, band, dirs):
    video, seg = oscillation_video(tmp_path/'osc.avi', seconds=3, fps=fps, freq=freq, direction=direction, back=back,
                                   body_deg=body, seed=fps)
    F = load_features(extract_motion(video, tmp_path, segmentation=seg, progress=False))
    d = _frame(F)
    assert list(d.columns) == list(motion_columns(fps)) and F.detected.all() and np.isfinite(F.features).all()
    inner = d.iloc[fps // 2:-fps // 2]                       # windows that lie inside the video
    bands = inner.filter(regex='Hz$').mean()
    assert bands.idxmax() == band, bands
    moving, still = ('back', 'front') if back else ('front', 'back')
    assert inner[moving].mean() > 10 * inner[still].mean()
    assert set(d.filter(like='dir_').iloc[1:].mean().nlargest(2).index) == dirs
    assert d.translation.max() < 0.05                        # the body itself stands still (body lengths / s)


def test_bands_follow_the_frame_rate():
    assert band_columns(15) == ('front_1-3Hz', 'front_3-6Hz', 'front_6-7.5Hz', 'back_1-3Hz', 'back_3-6Hz', 'back_6-7.5Hz')
    assert band_columns(60)[-1] == 'back_10-15Hz' and len(band_columns(60)) == 8
    assert band_columns(20) == tuple(f'{s}_{b}Hz' for s in ('front', 'back') for b in ('1-3', '3-6', '6-10'))
    assert band_columns(4) == ('front_1-2Hz', 'back_1-2Hz')


def test_stride_keeps_the_full_rate_rhythm(tmp_path):
    video, seg = oscillation_video(tmp_path/'osc60.avi', seconds=3, fps=60, freq=12, direction=90)
    F = load_features(extract_motion(video, tmp_path/'s12', segmentation=seg, stride=12, progress=False))
    assert F.frame_index.tolist() == list(range(0, 180, 12))          # 5 rows per second
    assert _frame(F).filter(regex='^front.*Hz$').iloc[1:-1].mean().idxmax() == 'front_10-15Hz'


def test_frames_without_a_mouse_are_zeros_never_nan(tmp_path):
    video, seg = oscillation_video(tmp_path/'osc.avi', seconds=2, fps=30)
    gap = copy.deepcopy(seg); gap.mask[5:15] = False; gap.bbox[5:15] = -1
    F = load_features(extract_motion(video, tmp_path, segmentation=gap, progress=False))
    assert np.isfinite(F.features).all()
    assert not F.detected[5:15].any() and F.detected[:5].all() and F.detected[15:].all()
    assert (F.features[5:15, :len(MOTION_COLUMNS)] == 0).all()


@pytest.mark.parametrize('crop', ['0,0,450,360', '450,0,900,360', '900,0,1350,360'])
def test_the_head_is_the_end_a_walking_mouse_goes_to(tmp_path, crop):
    video = fetch_file('bsoid-panels', 'locomote_hstacked.mp4')
    seg = segment_video(video, crop=crop, store_mask=True, progress=False)
    F = load_features(extract_motion(video, tmp_path, crop=crop, segmentation=seg, progress=False))
    with h5py.File(F.path, 'r') as f: head = f['head'][:]
    c = seg.centroid.astype(float); step = np.full_like(c, np.nan); step[5:-5] = c[10:] - c[:-10]   # 10 frames of travel
    fast = np.hypot(*step.T) > 0.25 * np.sqrt(np.median(seg.area[seg.area > 0]))              # over ¼ body length
    assert fast.sum() > 20
    assert (np.einsum('ij,ij->i', head[fast], step[fast]) > 0).mean() > 0.9


@pytest.fixture(scope='module')
def itch(tmp_path_factory):
    "A real B-SOiD panel, its saved segmentation with masks, and its motion and posture stores (5 rows per second)."
    d = tmp_path_factory.mktemp('itch')
    video, crop = fetch_file('bsoid-panels', 'itch_hstacked.mp4'), '0,0,450,360'
    seg = save_segmentation(segment_video(video, crop=crop, store_mask=True, progress=False), d/'seg.h5')
    motion = extract_motion(video, d/'motion', crop=crop, stride=3, segmentation=seg, progress=False)
    posture = extract_posture(video, d/'posture', crop=crop, stride=3, segmentation=seg, progress=False)
    return dict(video=video, crop=crop, seg=seg, motion=motion, posture=posture, dir=d)


def test_resume_after_an_interrupted_run_gives_the_same_rows(itch, tmp_path):
    kw = dict(crop=itch['crop'], stride=3, segmentation=itch['seg'], progress=False)
    p = extract_motion(itch['video'], tmp_path, max_frames=30, **kw)
    assert p.name.endswith('.partial.h5') and not features_path(tmp_path, itch['video'], itch['crop']).exists()
    with pytest.raises(FeatureError, match='no such feature store'): load_features(features_path(tmp_path, itch['video'], itch['crop']))
    with h5py.File(p, 'r') as f: assert int(f.attrs['n_done']) == 30 and not f.attrs['complete']
    with pytest.raises(MotionError, match='other settings'):            # a different run never adds to it
        extract_motion(itch['video'], tmp_path, **dict(kw, stride=5))
    q = extract_motion(itch['video'], tmp_path, **kw)
    assert not p.exists()
    a, b = load_features(q), load_features(itch['motion'])
    assert np.array_equal(a.features, b.features) and np.array_equal(a.frame_index, b.frame_index)
    assert np.array_equal(a.detected, b.detected) and np.array_equal(a.bbox, b.bbox)
    assert a.backbone == 'motion' and a.attrs['video_fps'] == 15 and a.attrs['stride'] == 3
    assert json.loads(a.attrs['columns'])[-1] == 'back_6-7.5Hz' and a.attrs['complete']
    assert not list(tmp_path.glob('*writing*')) and not list(tmp_path.glob('*partial*'))


def test_segmentation_of_another_size_is_refused(itch, tmp_path):
    with pytest.raises(MotionError, match='made with crop'):
        extract_motion(itch['video'], tmp_path, crop='450,0,900,360', segmentation=itch['seg'], progress=False)
    video, seg = oscillation_video(tmp_path/'osc.avi', seconds=1, fps=30, size=(320, 240))
    small = copy.deepcopy(seg); small.mask = small.mask[:, :200, :300]
    with pytest.raises(MotionError, match='300x200 px, the frames 320x240'):
        extract_motion(video, tmp_path, segmentation=small, progress=False)


def test_combine_real_stores_and_refusals(itch, tmp_path):
    both = load_features(combine_stores([itch['posture'], itch['motion']], tmp_path))
    P, M = load_features(itch['posture']), load_features(itch['motion'])
    assert both.backbone == 'posture+motion' and both.features.dtype == np.float32
    assert np.array_equal(both.features, np.c_[P.features, M.features])
    names = json.loads(both.attrs['columns'])
    assert names[0] == 'posture:speed' and 'motion:front_3-6Hz' in names and len(names) == both.features.shape[1]
    assert np.array_equal(both.detected, P.detected & M.detected) and np.array_equal(both.frame_index, M.frame_index)
    with pytest.raises(MotionError, match='same kind'): combine_stores([both.path, itch['motion']], tmp_path/'x.h5')

    video = itch['video']
    other_stride = extract_motion(video, tmp_path/'s5', crop=itch['crop'], stride=5, segmentation=itch['seg'], progress=False)
    other_crop = extract_posture(video, tmp_path/'c', crop='450,0,900,360', stride=3, progress=False)
    other_video = extract_posture(fetch_file('bsoid-panels', 'locomote_hstacked.mp4'), tmp_path/'v', crop=itch['crop'],
                                  stride=3, progress=False)
    with pytest.raises(MotionError, match='different strides') as e: combine_stores([itch['posture'], other_stride], tmp_path/'x.h5')
    assert str(itch['posture']) in str(e.value) and str(other_stride) in str(e.value)
    with pytest.raises(MotionError, match='different crops'): combine_stores([itch['motion'], other_crop], tmp_path/'x.h5')
    with pytest.raises(MotionError, match='different videos'): combine_stores([itch['motion'], other_video], tmp_path/'x.h5')
    cut = tmp_path/'cut.h5'                                              # the same store with its last row lost
    with h5py.File(itch['posture'], 'r') as f, h5py.File(cut, 'w') as g:
        for k in ('features', 'frame_index', 'bbox', 'detected'): g[k] = f[k][:-1]
        for k, v in f.attrs.items(): g.attrs[k] = v
    with pytest.raises(MotionError, match='different frame indices'): combine_stores([cut, itch['motion']], tmp_path/'x.h5')
    with pytest.raises(MotionError, match='not a combined store'): combine_stores([itch['posture'], itch['motion']], other_crop)
    assert not list(tmp_path.glob('*writing*'))


def test_two_videos_with_one_name_are_not_combined(itch, tmp_path):
    "cam1.mp4 of two session folders: same file name, other content."
    import shutil
    a, b = tmp_path/'day1', tmp_path/'day2'; a.mkdir(); b.mkdir()
    shutil.copy(itch['video'], a/'cam1.mp4'); shutil.copy(fetch_file('bsoid-panels', 'rear_minus_hstacked.mp4'), b/'cam1.mp4')
    p = extract_posture(a/'cam1.mp4', tmp_path/'p', crop=itch['crop'], stride=3, progress=False)
    m = extract_motion(b/'cam1.mp4', tmp_path/'m', crop=itch['crop'], stride=3, progress=False)
    with pytest.raises(MotionError, match='different videos'): combine_stores([p, m], tmp_path/'x.h5')
    from mousebehav.posture import PostureError
    with pytest.raises(PostureError) as e:                              # day 2's cam1 into the folder of day 1's
        extract_posture(b/'cam1.mp4', tmp_path/'p', crop=itch['crop'], stride=3, progress=False)
    msg = str(e.value)
    assert 'another video with the same file name' in msg and str(a/'cam1.mp4') in msg and 'segmentation_params' not in msg, msg
    assert 'other settings' not in msg and 'their own output folder' in msg
    same = extract_motion(a/'cam1.mp4', tmp_path/'m2', crop=itch['crop'], stride=3, segmentation=itch['seg'], progress=False)
    assert load_features(same).attrs['video_fingerprint'] == load_features(itch['motion']).attrs['video_fingerprint']


def _parser():
    ap = argparse.ArgumentParser(prog='mousebehav'); sub = ap.add_subparsers()
    add_cli(sub); add_bench(sub.add_parser('bench').add_subparsers())
    return ap


def test_combine_command_on_folders(itch, tmp_path, capsys):
    a = _parser().parse_args(['combine', str(itch['dir']/'posture'), str(itch['dir']/'motion'), '--out', str(tmp_path/'both')])
    assert a.func(a) == 0
    out = tmp_path/'both'/itch['motion'].name
    assert str(out) in capsys.readouterr().out and load_features(out).backbone == 'posture+motion'
    a = _parser().parse_args(['combine', str(itch['dir']/'posture'), str(tmp_path/'both'), '--out', str(tmp_path/'x')])
    with pytest.raises(MotionError, match='same kind'): a.func(a)
    a = _parser().parse_args(['combine', str(itch['posture']), str(itch['dir']/'motion'), '--out', str(tmp_path/'x')])
    with pytest.raises(MotionError, match='not both'): a.func(a)


def test_bench_motion_command(tmp_path, capsys):
    a = _parser().parse_args(['bench', 'motion', '--frames', '60', '--json', str(tmp_path/'b.json')])
    assert a.func(a) == 0
    r = json.loads((tmp_path/'b.json').read_text())
    assert (r['width'], r['height'], r['frames'], r['threads']) == (640, 480, 60, 1) and r['cores'] in (1, None)
    assert r['motion_fps'] > 0 and r['end_to_end_fps'] > 0 and r['cpu']
    assert 'motion fps' in capsys.readouterr().out
