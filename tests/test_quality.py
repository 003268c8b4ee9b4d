"Segmentation quality: keypoint scores checked by hand, SLEAP files of every layout, bench_real rows, quality reports on real video."
import json, os, shutil, warnings
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from mousebehav.data import fetch_file
from mousebehav.quality import (QualityError, QualityWarning, QUALITY_LIMITS, body_nodes, bench_real, keypoint_overlay,
                                keypoint_score, quality_report, read_sleap_keypoints, score_video, segmentation_stats, sleap_views)
from mousebehav.segment import Segmentation, SegmentError, segment_video
from mousebehav.synthetic import SyntheticMouse
from mousebehav.video import iter_frames, write_video

VIEWS = ('back', 'mid', 'side', 'top')
ROW_KEYS = {'video', 'frames', 'found', 'keypoints_in_mask', 'keypoints_in_box', 'tightness'}


def sleap(view):
    return fetch_file('sleap-4cam', f'minimal_{view}.mp4'), fetch_file('sleap-4cam', f'minimal_{view}_proofread.analysis.h5')


# ---------------------------------------------------------------- keypoint score, by hand

def test_keypoint_score_by_hand():
    m = np.zeros((3, 20, 20), bool); m[0, 5:10, 5:10] = True            # rows/cols 5..9
    bb = np.array([[3, 3, 12, 12], [-1, -1, -1, -1], [2, 2, 8, 8]])
    nan = [np.nan, np.nan]
    kp = np.array([[[7, 7], [12, 7], [13, 7], [11, 11], [12, 11], nan],   # in/in/out/in(2.8 px)/out(3.6 px) of the mask
                   [[7, 7], [8, 8], nan, nan, nan, nan],                   # no mouse: two misses
                   [nan] * 6], float)                                      # nothing visible: not scored
    r = keypoint_score(m, bb, kp)
    assert (r['frames'], r['found']) == (2, 1)
    assert r['keypoints_in_mask'] == pytest.approx(3 / 7)
    assert r['keypoints_in_box'] == pytest.approx(2 / 7)                  # x = 12 is outside the exclusive edge
    hull = 14 + 3 * (6 + np.sqrt(17) + 1 + np.sqrt(32)) + 9 * np.pi        # quadrilateral (7,7),(13,7),(12,11),(11,11) grown by 3
    assert r['tightness'] == pytest.approx(81 / hull)
    assert keypoint_score(m, bb, kp, dilate_px=0)['keypoints_in_mask'] == pytest.approx(1 / 7)
    assert keypoint_score(lambda i: m[i], bb, kp) == r
    assert keypoint_score(None, bb, kp)['keypoints_in_mask'] is None


def test_tightness_of_a_triangle_and_of_a_missed_video():
    # right triangle (10,10),(14,10),(10,13): area 6, perimeter 12; grown by 3 px: 6 + 36 + 9π; box 10x10
    kp = np.array([[[10, 10], [14, 10], [10, 13]]], float)
    m = np.zeros((1, 30, 30), bool); m[0, 8:16, 8:16] = True
    r = keypoint_score(m, np.array([[7, 7, 17, 17]]), kp)
    assert r['tightness'] == pytest.approx(100 / (6 + 36 + 9 * np.pi))
    assert r['keypoints_in_mask'] == 1 and r['keypoints_in_box'] == 1
    none = keypoint_score(m, np.full((1, 4), -1), kp)
    assert none == dict(frames=1, found=0, keypoints_in_mask=0.0, keypoints_in_box=0.0, tightness=None)


def test_keypoints_outside_the_frame_are_outside():
    m = np.ones((1, 10, 10), bool)
    r = keypoint_score(m, np.array([[0, 0, 10, 10]]), np.array([[[-5.0, 3.0], [3.0, 14.0], [4.0, 4.0]]]))
    assert r['keypoints_in_mask'] == pytest.approx(1 / 3) and r['keypoints_in_box'] == pytest.approx(1 / 3)


def test_keypoint_score_refuses_shapes_that_do_not_match():
    m = np.zeros((3, 8, 8), bool)
    with pytest.raises(QualityError, match='bboxes must be'): keypoint_score(m, np.zeros((2, 4)), np.zeros((3, 2, 2)))
    with pytest.raises(QualityError, match='2 masks for 3 frames'): keypoint_score(m[:2], np.zeros((3, 4)), np.zeros((3, 2, 2)))
    with pytest.raises(QualityError, match=r'\(T,K,2\)'): keypoint_score(m, np.zeros((3, 4)), np.zeros((3, 2)))


# ---------------------------------------------------------------- SLEAP files and body nodes

@pytest.mark.parametrize('view', VIEWS)
def test_read_every_sleap_view(view):
    _, a = sleap(view)
    kp, names = read_sleap_keypoints(a)
    assert kp.shape == (120, 15, 2) and len(names) == 15
    with h5py.File(a) as f: raw = f['tracks'][:]
    assert raw.shape == (1, 2, 15, 120)
    np.testing.assert_array_equal(kp, raw[0].transpose(2, 1, 0))
    body = [names[i] for i in body_nodes(names)]
    assert 'TTI' in body and 'Nose' in body and not any('tail' in b.lower() for b in body)
    assert len(body) == 11
    ok = np.isfinite(kp[:, body_nodes(names)]).all(2)
    assert ok.any(1).all()                                              # a visible body keypoint in every frame


def test_sleap_layouts_tracks_and_occupancy(tmp_path):
    kp, names = read_sleap_keypoints(sleap('mid')[1])
    two = np.stack([kp, kp + 50], -1)                                  # (T, K, 2, 2 animals): untransposed layout
    p = tmp_path / 'two.analysis.h5'
    occ = np.ones((120, 2), np.uint8); occ[10:20, 1] = 0               # the second animal leaves for ten frames
    with h5py.File(p, 'w') as f:
        f['tracks'] = two; f['node_names'] = np.array([n.encode() for n in names]); f['track_occupancy'] = occ
    k0, n0 = read_sleap_keypoints(p); k1, _ = read_sleap_keypoints(p, track=1)
    np.testing.assert_array_equal(k0, kp); assert n0 == names
    assert np.isnan(k1[10:20]).all() and np.allclose(k1[30], kp[30] + 50)
    with pytest.raises(QualityError, match='has 2 track'): read_sleap_keypoints(p, track=2)
    bad = tmp_path / 'bad.analysis.h5'
    with h5py.File(bad, 'w') as f: f['tracks'] = np.zeros((1, 3, 15, 4)); f['node_names'] = np.array([n.encode() for n in names])
    with pytest.raises(QualityError, match='does not fit 15 nodes'): read_sleap_keypoints(bad)
    (tmp_path / 'notes.analysis.h5').write_text('not hdf5')
    with pytest.raises(QualityError, match='not an HDF5 file'): read_sleap_keypoints(tmp_path / 'notes.analysis.h5')


@pytest.mark.parametrize('names, body', [
    (['Nose', 'TTI', 'TailTip', 'Tail_0', 'Tail_1', 'Neck'], ['Nose', 'TTI', 'Neck']),                     # SLEAP sample
    (['snout', 'leftear', 'tailbase', 'tail1', 'tail2', 'tailend'], ['snout', 'leftear', 'tailbase']),      # DeepLabCut
    (['nose', 'Tail_Base', 'Tail base', 'tail_root', 'tail_start', 'mid_tail', 'Tail_Tip', 'TAIL'],
     ['nose', 'Tail_Base', 'Tail base', 'tail_root', 'tail_start']),
    (['head', 'spine1', 'spine2', 'hip'], ['head', 'spine1', 'spine2', 'hip']),                           # no tail nodes
])
def test_body_nodes_of_several_skeletons(names, body):
    assert [names[i] for i in body_nodes(names)] == body


def test_body_nodes_needs_a_body():
    with pytest.raises(QualityError, match='no body keypoints'): body_nodes(['tail1', 'tail_tip'])


# ---------------------------------------------------------------- scoring real video

def _hull_segmentation(view, crop, frames):
    "A segmentation whose mask is the filled hull of the body keypoints (grown by 5 px), in `crop`: a perfect score."
    vid, a = sleap(view)
    kp, names = read_sleap_keypoints(a); kb = kp[:frames, body_nodes(names)] - [crop[0], crop[1]]
    h, w = crop[3] - crop[1], crop[2] - crop[0]
    masks = np.zeros((frames, h, w), bool); bb = np.zeros((frames, 4), np.int32)
    for t in range(frames):
        p = kb[t][np.isfinite(kb[t]).all(1)]
        m = np.zeros((h, w), np.uint8); cv2.fillConvexPoly(m, cv2.convexHull(p.round().astype(np.int32)), 1)
        m = cv2.dilate(m, np.ones((11, 11), np.uint8)); masks[t] = m.astype(bool)
        x, y, bw, bh = cv2.boundingRect(m); bb[t] = (x, y, x + bw, y + bh)
    area = masks.sum((1, 2)).astype(np.int32); cen = np.zeros((frames, 2), np.float32)
    return vid, a, Segmentation(np.arange(frames), bb, area, cen, masks, 'imbs', {'margin': 0}, 30.0, str(vid), ','.join(map(str, crop)))


def test_score_video_of_a_given_cropped_segmentation():
    vid, a, seg = _hull_segmentation('top', (400, 500, 800, 800), 20)
    r = score_video(vid, a, segmentation=seg)
    assert set(r) == ROW_KEYS and r['video'] == 'minimal_top.mp4'
    assert (r['frames'], r['found']) == (20, 20)
    assert r['keypoints_in_mask'] == 1.0 and r['keypoints_in_box'] == 1.0
    assert 1.0 < r['tightness'] < 2.5
    shifted = Segmentation(seg.frame_index, seg.bbox, seg.area, seg.centroid, seg.mask, 'imbs', {}, 30.0, seg.video, '0,0,400,300')
    assert score_video(vid, a, segmentation=shifted)['keypoints_in_box'] < 0.5    # the crop's offset matters


def test_score_video_refuses_keypoints_of_a_shorter_video(tmp_path):
    vid, a = sleap('mid')
    kp, names = read_sleap_keypoints(a)
    short = tmp_path / 'short.analysis.h5'
    with h5py.File(short, 'w') as f:
        f['tracks'] = kp[:10].transpose(2, 1, 0)[None]; f['node_names'] = np.array([n.encode() for n in names])
    with pytest.raises(QualityError, match='keypoints for 10 frames'): score_video(vid, short, max_frames=12)


def test_bench_real_rows_and_missing_views(tmp_path, data_dir, monkeypatch):
    views = sleap_views()
    assert views == [(f'minimal_{v}.mp4', f'minimal_{v}_proofread.analysis.h5') for v in VIEWS]
    d = tmp_path / 'sleap-4cam'; d.mkdir()
    for f in ('minimal_back.mp4', 'minimal_back_proofread.analysis.h5'): shutil.copy(data_dir / 'sleap-4cam' / f, d / f)
    monkeypatch.setenv('MOUSEBEHAV_DATA_DIR', str(tmp_path))               # a local copy with one view only
    with pytest.warns(QualityWarning) as w:
        rows = bench_real(max_frames=20)
    assert sorted(str(x.message).split(' view ')[1].split()[0] for x in w) == ['minimal_mid.mp4', 'minimal_side.mp4', 'minimal_top.mp4']
    assert [r['video'] for r in rows] == ['minimal_back.mp4', 'overall']
    for r in rows:
        assert set(r) == ROW_KEYS and r['frames'] == 20 and 0 <= r['found'] <= 20
        assert 0 <= r['keypoints_in_mask'] <= 1 and 0 <= r['keypoints_in_box'] <= 1
    assert {k: v for k, v in rows[1].items() if k != 'video'} == {k: v for k, v in rows[0].items() if k != 'video'}
    json.dumps({'real': rows})
    monkeypatch.setenv('MOUSEBEHAV_DATA_DIR', str(tmp_path / 'nothing'))
    with pytest.warns(QualityWarning), pytest.raises(QualityError, match='none of its 4 views'): bench_real()


def test_keypoint_overlay_marks_inside_and_outside():
    f = np.full((40, 40, 3), 128, np.uint8); m = np.zeros((40, 40), bool); m[10:20, 10:20] = True
    img = keypoint_overlay(f, m, np.array([8, 8, 22, 22]), np.array([[15.0, 15.0], [35.0, 35.0], [np.nan, np.nan]]), radius=1)
    assert tuple(img[15, 15]) == (0, 220, 0) and tuple(img[35, 35]) == (0, 0, 255)


# ---------------------------------------------------------------- quality report

@pytest.fixture(scope='module')
def openfield(tmp_path_factory):
    "The first 200 frames of the DeepLabCut open field, segmented with masks into a file."
    d = tmp_path_factory.mktemp('of')
    seg = segment_video(fetch_file('dlc-openfield', 'm3v1mp4.mp4'), max_frames=200, store_mask=True, progress=False, out=d / 'of.h5')
    return d / 'of.h5', seg


def test_report_on_a_real_video(openfield, tmp_path):
    h5, seg = openfield
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        rep = quality_report(h5, out_dir=tmp_path / 'rep')
    files = sorted(p.name for p in (tmp_path / 'rep').iterdir())
    assert files == ['contact_sheet.png', 'report.json']                   # nothing half-written left beside them
    js = json.loads((tmp_path / 'rep' / 'report.json').read_text())
    assert js == json.loads(json.dumps(rep))
    with h5py.File(h5) as f: bb, area, cen, fi = f['bbox'][:], f['area'][:], f['centroid'][:], f['frame_index'][:]
    found = bb[:, 0] >= 0
    assert js['frames'] == 200 and js['found'] == int(found.sum()) and js['share_found'] == pytest.approx(found.mean())
    assert js['masks'] is True and js['frame_size'] == [640, 480] and js['method'] == 'imbs'
    bl = np.median(np.maximum(bb[found, 2] - bb[found, 0], bb[found, 3] - bb[found, 1]) - 20)
    assert js['body_length_px'] == pytest.approx(bl)
    d = np.hypot(*np.diff(cen, axis=0).T); both = found[1:] & found[:-1]
    assert js['jumps']['frames'] == fi[1:][both & (d > js['jumps']['threshold_px'])].tolist()
    assert js['jumps']['threshold_px'] == pytest.approx(0.5 * bl)
    la = np.log(area[found]); z = np.abs(la - np.median(la)) / max(1.4826 * np.median(np.abs(la - np.median(la))), 0.1)
    assert js['area_outliers']['frames'] == fi[found][z > 4].tolist()
    assert js['ok'] == (len(w) == 0) and isinstance(js['verdict'], str) and js['verdict']
    img = cv2.imread(str(tmp_path / 'rep' / 'contact_sheet.png'))
    assert img.shape[1] == 4 * 320 and img.shape[0] > 3 * 240                # twelve frames, four a row, 320 px wide tiles
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000                 # real pictures, not an empty canvas


def test_report_from_the_object_without_masks(openfield, tmp_path):
    _, seg = openfield
    nomask = Segmentation(seg.frame_index, seg.bbox, seg.area, seg.centroid, None, seg.method, seg.params, seg.fps, seg.video, seg.crop)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', QualityWarning)
        rep = quality_report(nomask, out_dir=tmp_path / 'deep' / 'er')       # folders made as needed
    assert rep['masks'] is False and rep['frame_size'] == [640, 480]
    assert (tmp_path / 'deep' / 'er' / 'contact_sheet.png').exists()


def _empty_videos(tmp_path):
    "Three videos with no mouse: the real open-field arena (median of its frames), the synthetic arena, a flat grey image."
    of = fetch_file('dlc-openfield', 'm3v1mp4.mp4')
    arena = np.median(np.stack([f for _, f in iter_frames(of, stride=50)]), 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    syn = np.clip(SyntheticMouse(320, 240, n_frames=2).background + 0.5, 0, 255).astype(np.uint8)
    return {'arena': write_video(tmp_path / 'arena.avi', [arena] * 60, 30.0),
            'synthetic': write_video(tmp_path / 'syn.avi', [np.clip(syn + rng.normal(0, 3, syn.shape), 0, 255).astype(np.uint8) for _ in range(40)], 30.0),
            'grey': write_video(tmp_path / 'grey.avi', [np.full((240, 320, 3), 128, np.uint8)] * 40, 30.0)}


def test_a_video_without_a_mouse_is_never_a_success(tmp_path):
    for name, v in _empty_videos(tmp_path).items():
        seg = segment_video(v, store_mask=True, progress=False)
        with pytest.warns(QualityWarning):
            rep = quality_report(seg, out_dir=tmp_path / name)
        js = json.loads((tmp_path / name / 'report.json').read_text())
        assert js['ok'] is False, (name, js['verdict'])
        if js['found'] == 0: assert js['verdict'].startswith('no mouse found in any frame'), name
        else: assert 'more than a mouse does' in js['verdict'] or 'not a mouse' in js['verdict'], (name, js['verdict'])
        assert (tmp_path / name / 'contact_sheet.png').exists()


def test_no_mouse_in_any_frame_says_so(openfield, tmp_path):
    _, seg = openfield
    T = len(seg)
    none = Segmentation(seg.frame_index, np.full((T, 4), -1, np.int32), np.zeros(T, np.int32), np.full((T, 2), np.nan, np.float32),
                        None, seg.method, seg.params, seg.fps, seg.video, seg.crop)
    with pytest.warns(QualityWarning, match='no mouse found in any frame'):
        rep = quality_report(none, out_dir=tmp_path)
    assert rep['found'] == 0 and rep['share_found'] == 0 and rep['ok'] is False
    assert rep['longest_gap'] == dict(frames=T, first=0, last=T - 1)
    assert rep['jumps']['count'] == 0 and rep['body_length_px'] is None


def test_report_stats_by_hand():
    n = 10; x = 100 + 5.0 * np.arange(n); x[6:] += 25                       # a 30 px jump at frame 6 (body length 40)
    cen = np.stack([x, np.full(n, 200.0)], 1).astype(np.float32)
    bb = np.stack([x - 30, np.full(n, 180), x + 30, np.full(n, 220)], 1).astype(np.int32)
    area = np.full(n, 400, np.int32); area[8] = 1600
    bb[3] = -1; area[3] = 0; cen[3] = np.nan
    seg = Segmentation(np.arange(n), bb, area, cen, None, 'imbs', {'margin': 10}, 30.0, 'toy.mp4', None)
    st = segmentation_stats(seg, frame_size=(640, 480))
    assert st['jumps']['frames'] == [6] and st['area_outliers']['frames'] == [8]
    assert st['fill'] == pytest.approx(0.5) and st['body_length_px'] == 40
    assert st['longest_gap'] == dict(frames=1, first=3, last=3) and st['ok'] is False
    assert segmentation_stats(seg, fps=5.0)['jumps']['count'] == 0              # 3 body lengths a frame allowed at 5 fps
    loose = segmentation_stats(seg, frame_size=(640, 480), limits=dict(good_found=0.9, outlier_rate=0.2))
    assert loose['ok'] is True and loose['verdict'].startswith('looks good')
    with pytest.raises(QualityError, match='unknown quality limit'): segmentation_stats(seg, limits={'jumps': 1})
    assert set(QUALITY_LIMITS) >= {'good_found', 'jump_bl', 'outlier_z'}


def test_report_errors_name_the_file(openfield, tmp_path):
    _, seg = openfield
    gone = Segmentation(seg.frame_index, seg.bbox, seg.area, seg.centroid, None, seg.method, seg.params, seg.fps, str(tmp_path / 'moved.mp4'), None)
    with pytest.raises(QualityError, match='moved.mp4'): quality_report(gone, out_dir=tmp_path)
    with pytest.raises(SegmentError, match='no such file'): quality_report(tmp_path / 'nothing.h5', out_dir=tmp_path)
    with pytest.raises(QualityError, match='Segmentation or the path'): quality_report(42, out_dir=tmp_path)


def test_a_failed_report_leaves_no_report_json(openfield, tmp_path, monkeypatch):
    h5, _ = openfield
    import mousebehav.quality as Q
    def boom(*a, **k): raise RuntimeError('disk full')
    monkeypatch.setattr(Q.json, 'dumps', boom)
    with pytest.raises(RuntimeError, match='disk full'), warnings.catch_warnings():
        warnings.simplefilter('ignore', QualityWarning)
        quality_report(h5, out_dir=tmp_path)
    assert not (tmp_path / 'report.json').exists() and not list(tmp_path.glob('.*partial'))
