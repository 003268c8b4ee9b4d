"""Several views of one session: alignment through a sync result, session label tables, and the two fusions with
views missing in training and in prediction."""
import itertools, json, pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mousebehav.features import load_features
from mousebehav.multiview import (FUSIONS, AlignedViews, SessionError, SessionModel, align_views,
                                  fit_session_model, predict_session, read_dannce_calibration, read_session_labels,
                                  render_scene)
from mousebehav.posture import extract_posture
from mousebehav.sequences import LabelError
from mousebehav.sync import CameraSync, SyncResult
from mousebehav.store import write_store


def toy_store(path, frames, video, n_frames=None, detected=None, fps=30.0, backbone='toy', cols=('frame',)):
    "A store whose features are each row's own frame number."
    fi = np.asarray(frames, np.int64)
    return write_store(Path(path), dict(backbone=backbone, columns=json.dumps(list(cols)), feature_dim=len(cols), video_name=video,
                                         video_fps=fps, video_frame_count=int(n_frames or fi.max() + 1)),
                        np.repeat(fi[:, None], len(cols), 1).astype(np.float32), fi, np.full((len(fi), 4), -1, np.int32),
                        np.ones(len(fi), bool) if detected is None else detected)


def test_align_offset_drift_rate_and_stride(tmp_path):
    # reference 30 fps; view b started 12 frames earlier; view c runs at 60 fps, started 0.25 s later, clock 0.1 % fast,
    # and its store keeps every second frame (stride 2)
    st = [toy_store(tmp_path/'a.h5', range(300), 'a.mp4'), toy_store(tmp_path/'b.h5', range(320), 'b.mp4'),
          toy_store(tmp_path/'c.h5', range(0, 600, 2), 'c.mp4', n_frames=600, fps=60.0)]
    sync = SyncResult([CameraSync('a.mp4', 30, 300, 0, 0, 1, 1, 'reference', 30), CameraSync('b.mp4', 30, 320, 12, 0.4, 1, 1, 'motion', 30),
                       CameraSync('c.mp4', 60, 600, -15, -0.25, 1.001, 1, 'motion', 30)])
    al = align_views(st, sync, views=['a', 'b', 'c'], session='s')
    r = np.arange(300)
    assert al.views == ['a', 'b', 'c'] and al.frame_index.tolist() == r.tolist() and al.fps == 30.0
    assert al.source_frame[0].tolist() == r.tolist() and al.source_frame[1].tolist() == (r + 12).tolist()
    kc = -15 + 1.001 * 2 * r                                     # fractional frame of c at each reference frame
    ok = al.present[2]
    assert (np.abs(al.source_frame[2, ok] - kc[ok]) <= 1.0).all() and (al.source_frame[2, ok] % 2 == 0).all()
    assert (al.status[2][kc < -0.5] == 1).all() and ok[kc > 1].all()
    assert np.isnan(al.features[2, ~ok]).all() and (al.features[2, ok, 0] == al.source_frame[2, ok]).all()
    assert al.summary().set_index('view').loc['c', 'not recorded'] == pytest.approx(np.mean(kc < -1), abs=0.01)


def test_align_marks_dropped_frames_and_no_mouse(tmp_path):
    n = 200
    det = np.ones(n - 3, bool); det[[10, 11]] = False
    times_b = np.delete(np.arange(n) / 30, [50, 51, 120])          # camera b lost three frames
    st = [toy_store(tmp_path/'a.h5', range(n), 'a.mp4'), toy_store(tmp_path/'b.h5', range(n - 3), 'b.mp4', detected=det)]
    sync = SyncResult([CameraSync('a.mp4', 30, n, 0, 0, 1, 1, 'timestamps', 30, times=np.arange(n) / 30, period=1 / 30),
                       CameraSync('b.mp4', 30, n - 3, 0, 0, 1, 1, 'timestamps', 30, times=times_b, period=1 / 30)])
    al = align_views(st, sync, views=['a', 'b'])
    assert np.flatnonzero(al.status[1] == 2).tolist() == [50, 51, 120]
    assert np.flatnonzero(al.status[1] == 3).tolist() == [10, 11]
    assert al.source_frame[1, 52] == 50 and al.source_frame[1, 121] == 118 and al.source_frame[1, 199] == 196
    # without timestamps (same frame numbers) the lost frames go unnoticed: every later frame is off
    plain = align_views(st)
    assert (plain.status[1] == 2).sum() == 0 and plain.source_frame[1, 121] == 121


def test_align_refuses_stores_that_do_not_fit(tmp_path):
    a, b = toy_store(tmp_path/'a.h5', range(50), 'a.mp4'), toy_store(tmp_path/'b.h5', range(50), 'b.mp4')
    sync = SyncResult([CameraSync('a.mp4', 30, 50, 0, 0, 1, 1, 'reference', 30), CameraSync('b.mp4', 30, 50, 0, 0, 1, 1, 'motion', 30)])
    with pytest.raises(SessionError, match="b.mp4, but the sync result's video 0 is a.mp4"): align_views([b, a], sync)
    with pytest.raises(SessionError, match='has 2 videos but 3 views'): align_views([a, b, a], sync, views=list('xyz'))
    c = toy_store(tmp_path/'c.h5', range(50), 'c.mp4', backbone='posture')
    with pytest.raises(SessionError, match='extract every view the same way'): align_views([a, c])
    with pytest.raises(SessionError, match='view names repeat'): align_views([a, b], views=['x', 'x'])
    assert align_views({'top': a, 'side': b}).views == ['top', 'side']


KNOWN = {'s1': {'cam1': 's1/cam1.mp4', 'cam2': 's1/cam2.mp4'}, 's2': {'cam1': 's2/cam1.mp4', 'cam2': 's2/cam2.mp4', 'cam3': 's2/cam3.mp4'}}


def test_session_labels_from_a_file(tmp_path):
    p = tmp_path/'labels.csv'
    p.write_text('session,views,start_frame,end_frame,behavior,fold\n'
                 's1,,0,30,rearing,0\n'
                 ',s2/cam1.mp4;cam3,30,60,locomote,1\n'            # the session named by its views
                 's2,cam2.mp4,60,90,face_groom,1\n'
                 ',cam3.mp4,90,120,rearing,0\n')                   # cam3.mp4 exists only in s2
    lab = read_session_labels(p, KNOWN)
    assert lab.session.tolist() == ['s1', 's2', 's2', 's2']
    assert lab.views.tolist() == [('cam1', 'cam2'), ('cam1', 'cam3'), ('cam2',), ('cam3',)]
    assert lab.row.tolist() == [2, 3, 4, 5] and lab.attrs['source'] == str(p)


def test_session_labels_errors_every_row(tmp_path):
    p = tmp_path/'bad.csv'
    p.write_text('session,views,start_frame,end_frame,behavior,fold\n'
                 's1,cam7,0,30,rearing,0\n'                      # 2: unknown view
                 ',s1/cam1.mp4;s2/cam2.mp4,0,30,rearing,0\n'     # 3: views of two sessions
                 ',cam1.mp4,0,30,rearing,0\n'                    # 4: cam1.mp4 is in both sessions
                 's1,s2/cam2.mp4,0,30,rearing,0\n'               # 5: a view of s2 in a row of s1
                 's9,,0,30,rearing,0\n'                          # 6: unknown session
                 's1,,30,10,flying,0\n'                          # 7: row checks: end before start, unknown behaviour
                 's2,cam9.mp4,5,x,rearing,0\n'                   # 8: both kinds in one row
                 's1,,0,30,rearing,0\n')                         # 9: fine
    with pytest.raises(LabelError) as e: read_session_labels(p, KNOWN)
    msg = str(e.value)
    assert msg.startswith(f'7 bad row(s) in {p}')
    for s in ["row 2: unknown view 'cam7' (session 's1' has views cam1, cam2)",
              "row 3: views of different sessions: 's1/cam1.mp4' (s1), 's2/cam2.mp4' (s2)",
              "row 4: views 'cam1.mp4' belong to sessions s1, s2: add a session column",
              "row 5: views of different sessions: 's2/cam2.mp4' is a view of session 's2', not of 's1'",
              "row 6: unknown session 's9' (known: s1, s2)", "row 7: unknown behavior 'flying'",
              "end_frame 10 <= start_frame 30", "row 8: unknown view 'cam9.mp4'", "end_frame 'x' is not an integer"]:
        assert s in msg, s
    assert 'row 9' not in msg
    with pytest.raises(LabelError, match='missing column.*fold'):
        read_session_labels(pd.DataFrame(dict(session=['s1'], start_frame=[0], end_frame=[3], behavior=['rearing'])), KNOWN)


@pytest.fixture(scope='module')
def three_views(tmp_path_factory, data_dir):
    "A 600-frame scene seen by DANNCE views R, U and S (each loses the mouse 10 % of the time), through posture stores."
    cams = read_dannce_calibration(data_dir/'dannce-5cam', names=list('RLEUS'))
    sc = render_scene([cams[i] for i in (0, 3, 4)], n_frames=600, scale=0.2, sizes=[(1328, 1048)] * 3, occlusion=0.1, seed=11, name='three')
    d = tmp_path_factory.mktemp('three')
    vids = sc.write_videos(d/'videos')
    stores = [extract_posture(p, d/'posture', segmentation=sc.segmentation(v, p), progress=False) for v, p in enumerate(vids)]
    return sc, align_views(stores, views=sc.views, session='three')


def _cut(al, a, b, name, views=None):
    "Rows a…b-1 of an AlignedViews as a session of its own (frames kept), optionally only some views."
    s = replace(al, session=name, frame_index=al.frame_index[a:b], features=al.features[:, a:b], status=al.status[:, a:b],
                source_frame=al.source_frame[:, a:b])
    return s.subset(views) if views else s


def _labels(sc, sessions):
    rows = [dict(session=s.session, start_frame=max(st, int(s.frame_index[0])), end_frame=min(e, int(s.frame_index[-1]) + 1), behavior=b, fold=0)
            for s in sessions for st, e, b, _ in sc.bouts if min(e, s.frame_index[-1] + 1) > max(st, s.frame_index[0])]
    return read_session_labels(pd.DataFrame(rows), sessions)


def test_missing_views_in_training_and_prediction(three_views):
    sc, al = three_views
    a = _cut(al, 0, 200, 'early_part', ['R', 'U'])          # S missing from this session altogether
    b = _cut(al, 200, 400, 'middle_part')
    test = _cut(al, 400, 600, 'late_part', ['S', 'R'])      # U missing, views in another order
    lab = _labels(sc, [a, b])
    truth = sc.labels[test.frame_index]
    for fusion in FUSIONS:
        m = fit_session_model([a, b], lab, fusion=fusion)
        assert m.views == ['R', 'U', 'S'] and m.fusion == fusion
        p = predict_session(m, test)
        seen = test.present.any(0)
        assert ((p.labels != '') == seen).all() and not p.used[1].any()            # U never used
        assert (p.used[[0, 2]] == test.present[[1, 0]]).all()                       # R and S used exactly where present
        assert np.isnan(p.probs[~seen]).all() and np.allclose(p.probs[seen].sum(1), 1)
        acc = np.mean(p.labels[seen] == truth[seen])
        assert acc > 0.85, (fusion, acc)                                            # three classes: chance is about 0.4
        t = p.table()
        assert t.views.iloc[np.flatnonzero(test.present.all(0))[0]] == 'R+S' and set(t.n_views) <= {0, 1, 2}
        bad = replace(test, views=['S', 'X'])
        with pytest.raises(SessionError, match="view\\(s\\) X unknown to the model"): predict_session(m, bad)
        with pytest.raises(SessionError, match="has no view"): predict_session(m, test, views=['U'])
    with pytest.raises(SessionError, match="sessions that were not given|no features were given"):
        fit_session_model([a], _labels(sc, [a, b]))


def test_fusion_with_any_subset(three_views):
    sc, al = three_views
    train, test = _cut(al, 0, 360, 'train'), _cut(al, 360, 600, 'test')
    lab = _labels(sc, [train])
    truth = sc.labels[test.frame_index]
    for fusion in FUSIONS:
        m = fit_session_model(train, lab, fusion=fusion)
        acc = {}
        for n in (1, 2, 3):
            for vs in itertools.combinations(sc.views, n):
                p = predict_session(m, test, views=list(vs))
                idx = [sc.views.index(v) for v in vs]
                assert ((p.labels != '') == test.present[idx].any(0)).all()
                assert not p.used[[i for i in range(3) if i not in idx]].any() and (p.used[idx] == test.present[idx]).all()
                acc[vs] = np.mean(p.labels == truth)                          # a frame without a label counts as wrong
        singles = max(acc[(v,)] for v in sc.views)
        assert acc[tuple(sc.views)] >= singles - 0.01, (fusion, acc)                   # 240 test frames: 0.01 is 2 frames
        assert all(acc[k] >= singles - 0.05 for k in acc if len(k) == 2), (fusion, acc)


def test_session_model_save_load(three_views, tmp_path):
    sc, al = three_views
    m = fit_session_model(_cut(al, 0, 300, 'x'), _labels(sc, [_cut(al, 0, 300, 'x')]), fusion='early', copies=1)
    q = SessionModel.load(m.save(tmp_path/'m.skops'))
    assert q.views == m.views and q.classes == m.classes and q.fusion == 'early' and q.fps == 30.0
    assert (predict_session(q, al).labels == predict_session(m, al).labels).all()
    with pytest.raises(SessionError, match='2 frames/s, but the model was trained at 30'): predict_session(q, replace(al, fps=2.0))
    replace(m, views=['R', 'U']).save(tmp_path/'bad.skops')                  # its classifier takes three views' features
    with pytest.raises(SessionError, match='damaged session model'): SessionModel.load(tmp_path/'bad.skops')
    (tmp_path/'other.pkl').write_bytes(pickle.dumps({'a': 1}))
    with pytest.raises(SessionError, match='not a session model'): SessionModel.load(tmp_path/'other.pkl')
    with pytest.raises(SessionError, match='no such model file'): SessionModel.load(tmp_path/'none.pkl')
    with pytest.raises(SessionError, match="unknown fusion 'mid'"): fit_session_model(al, _labels(sc, [al]), fusion='mid')


def test_align_refuses_a_namesake_of_another_session(tmp_path, field_cases):
    "Two session folders that both hold a cam1.mp4: the sync of one and the store of the other do not go together."
    from mousebehav.video import file_fingerprint
    import shutil
    (tmp_path/'s1').mkdir(); (tmp_path/'s2').mkdir()
    shutil.copy(field_cases/'base.mp4', tmp_path/'s1'/'cam1.mp4'); shutil.copy(field_cases/'one.mp4', tmp_path/'s2'/'cam1.mp4')
    shutil.copy(field_cases/'base.mp4', tmp_path/'s1'/'cam2.mp4')
    def store(path, video):
        return write_store(path, dict(backbone='toy', columns='["frame"]', video_name='cam1.mp4', video_fingerprint=file_fingerprint(video),
                                       video_fps=30.0, video_frame_count=90), np.arange(90, dtype=np.float32)[:, None], np.arange(90),
                            np.full((90, 4), -1, np.int32), np.ones(90, bool))
    ref = write_store(tmp_path/'ref.h5', dict(backbone='toy', columns='["frame"]', video_name='cam2.mp4', video_fps=30.0, video_frame_count=90),
                       np.arange(90, dtype=np.float32)[:, None], np.arange(90), np.full((90, 4), -1, np.int32), np.ones(90, bool))
    sync = SyncResult([CameraSync(str(tmp_path/'s1'/'cam2.mp4'), 30, 90, 0, 0, 1, 1, 'reference', 30),
                       CameraSync(str(tmp_path/'s1'/'cam1.mp4'), 30, 90, 0, 0, 1, 1, 'motion', 30)])
    assert align_views([ref, store(tmp_path/'a.h5', tmp_path/'s1'/'cam1.mp4')], sync).present.all()
    with pytest.raises(SessionError, match='another video with the same name'):
        align_views([ref, store(tmp_path/'b.h5', tmp_path/'s2'/'cam1.mp4')], sync)
