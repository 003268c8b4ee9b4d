"Live classification on the real DLC open-field video: online = offline, a killed run leaves a valid CSV, clean stops, errors."
import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mousebehav import live as L, evaluate as E, sequences as S, frame_model as FM
from mousebehav.data import labels_table

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, '-c', 'import sys; from mousebehav.cli import main; sys.exit(main())']   # the console script


def _clips_model(d, backbone: str):
    "A frame model on the `backbone` descriptors of the 80 B-SOiD clips (coarse classes, 5 fps), saved in `d`."
    lab = labels_table('bsoid-clips'); lab = lab[lab.behavior.isin(list(S.class_map('coarse')))].reset_index(drop=True)
    feats = E.dataset_features('bsoid-clips', lab, d/'feats', backbone=backbone, stride=1)
    fm = FM.fit_frames(S.build_sequences(lab, feats, scheme='coarse'), n_estimators=60, scheme='coarse')
    return FM.save_frame_model(fm, d/'fm.skops')


@pytest.fixture(scope='module')
def model(tmp_path_factory): return _clips_model(tmp_path_factory.mktemp('live'), 'posture')


@pytest.fixture(scope='module')
def video(data_dir):
    return data_dir/'dlc-openfield'/'m3v1mp4.mp4'


@pytest.fixture(scope='module')
def both(model, video, tmp_path_factory):
    "(offline `predict_video` table, online table) of the whole video, stabilised with threshold 0.4 over 3 frames."
    off = E.predict_video(model, video, features_dir=tmp_path_factory.mktemp('vf'), threshold=0.4, min_frames=3, causal=True)
    on, oc = L.classify_video(model, video, threshold=0.4, min_frames=3)   # the body area measured first, as predict does
    return off, on, oc


def test_online_equals_offline(both, video):
    off, on, oc = both
    assert on.frame.tolist() == off.frame.tolist() == list(range(2330))
    assert on.label.tolist() == off.label.tolist()                  # exactly the same labels
    assert off.label.nunique() > 1                                  # … and not a constant answer
    P, Q = on.filter(like='p_').values, off.filter(like='p_').values
    assert np.abs(P - Q).max() <= 1e-9                              # probabilities up to rounding (measured: 0)
    np.testing.assert_array_equal(on.time_s.values, off.time_s.values)
    assert oc.stride == 6 and oc.delay_rows == 40
    assert oc.posture.ma == L.measure_body_area(video)
    assert (on.delay_s <= oc.delay_s + 1e-6).iloc[:-300].all()      # answered within the fixed lag while streaming


def test_review_boris_round_trip(both, video, tmp_path):
    off, _, _ = both
    eth = tmp_path/'eth.csv'; off.to_csv(eth, index=False)
    r = subprocess.run([*CLI, 'review', str(eth), str(video), '--top', '4',
                        '--boris', str(tmp_path/'b.tsv')], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rv = pd.read_csv(tmp_path/'eth_review.csv')
    allb = L.review_bouts(off, 10_000)
    assert len(rv) == min(4, len(allb)) and rv.mean_probability.tolist() == sorted(rv.mean_probability.tolist())
    assert rv.mean_probability.max() <= allb.mean_probability.sort_values().iloc[len(rv) - 1] + 1e-5
    ev = pd.read_csv(tmp_path/'b.tsv', sep='\t')
    ev.loc[1, 'Behavior'] = 'groom'; ev.to_csv(tmp_path/'corrected.tsv', sep='\t', index=False)   # corrected in BORIS
    back = S.read_label_file(tmp_path/'corrected.tsv', video_fps={video.name: 30.0})
    b = allb.sort_values('start_frame')
    assert back.start_frame.tolist() == b.start_frame.tolist() and back.end_frame.tolist() == b.end_frame.tolist()
    want = b.behavior.tolist(); want[1] = 'groom'
    assert back.behavior.tolist() == want and set(back.video) == {video.name}


def test_nwb(both, tmp_path):
    off, _, oc = both
    f = L.write_nwb(off, oc.classes, tmp_path/'s.nwb', source='dlc')
    from pynwb import NWBHDF5IO
    with NWBHDF5IO(str(f), 'r') as io:
        mod = io.read().processing['behavior']
        n_bouts = len(mod['behavior_bouts']); shape = mod['behavior_probabilities'].data.shape
    ref = E.bouts(off.label.values, off.filter(like='p_').values, 30.0, oc.classes, off.frame.values, times=off.time_s.values)
    assert n_bouts == len(ref) and shape == (2330, len(oc.classes))
    b, p = L.read_nwb(f)
    assert b.behavior.tolist() == ref.behavior.tolist() and b.end_frame.tolist() == ref.end_frame.tolist()
    np.testing.assert_allclose(p.filter(like='p_').values, off.filter(like='p_').values, atol=1e-6)


def _live(model, video, out, *extra):
    return subprocess.Popen([*CLI, 'live', str(model), '--source', str(video),
                             '--out', str(out), '--threshold', '0.4', '--quiet', *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(path) -> int:
    try: return max(0, path.read_text().count('\n') - 1)
    except FileNotFoundError: return 0


def _wait_rows(p, path, n, limit=240):
    t0 = time.time()
    while _rows(path) < n:
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < limit, 'no rows written'
        time.sleep(0.2)


def test_sigkill_leaves_valid_csv(model, video, tmp_path):
    out = tmp_path/'k.csv'
    p = _live(model, video, out); _wait_rows(p, out, 30)
    p.send_signal(signal.SIGKILL); p.wait()
    text = out.read_text()
    assert text.endswith('\n')                                     # no half-written row
    df = pd.read_csv(out)
    assert len(df) >= 30 and df.frame.tolist() == list(range(len(df)))
    assert not df.isna().any().any() and np.allclose(df.filter(like='p_').sum(axis=1), 1, atol=1e-3)
    assert not (tmp_path/'k_bouts.csv').exists()                   # a killed run writes no bouts file that looks complete


def test_sigint_stops_cleanly(model, video, tmp_path):
    out = tmp_path/'i.csv'
    p = _live(model, video, out); _wait_rows(p, out, 12)
    p.send_signal(signal.SIGINT); so, se = p.communicate(timeout=120)
    assert p.returncode == 0, se
    assert '(stopped)' in so and 'Traceback' not in se
    df = pd.read_csv(out); b = pd.read_csv(tmp_path/'i_bouts.csv')
    assert df.frame.tolist() == list(range(len(df))) and len(df) > 12   # the waiting frames answered at the stop
    assert b.start_frame.iloc[0] == 0 and b.end_frame.iloc[-1] == df.frame.iloc[-1] + 1
    assert b.duration.sum() == pytest.approx(df.time_s.iloc[-1] - df.time_s.iloc[0] + 1 / 30, abs=1e-3)


def test_missing_camera(model, tmp_path):
    r = subprocess.run([*CLI, 'live', str(model), '--source', '9', '--out',
                        str(tmp_path/'c.csv')], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'camera 9' in lines[0] and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'c.csv').exists()


def test_paced_drops_late_frames():
    now = [0.0]
    def sleep(s): now[0] += s
    def frames():
        for i in range(10):
            if i == 4: now[0] += 0.2                               # the machine stalls: frames 4…9 come late
            yield i, None, i / 30
    st = {}
    got = [i for i, _, _ in L.paced(frames(), 30.0, clock=lambda: now[0], sleep=sleep, stats=st)]
    assert got[:4] == [0, 1, 2, 3] and st['dropped'] == 10 - len(got) and st['dropped'] >= 4


def test_calibration_lowers_ece():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 4000); y = np.array([rng.choice(4, p=q) for q in p])
    over = L.temperature_scale(p, 0.3)                             # an over-confident model
    cv = dict(classes=list('abcd'), predictions=[dict(fold=i % 5, true='abcd'[t], p=list(q)) for i, (t, q) in enumerate(zip(y, over))])
    rep = L.calibration_report(cv)
    assert rep['ece_before'] > 0.15 and rep['ece_after'] < 0.03 and 2.8 < rep['temperature'] < 3.9
    assert rep['precision'] >= 0.85 and 0 < rep['unsure'] < 1
    assert L.ece(p, y) < 0.03                                      # the true probabilities are calibrated
    assert rep['headline'] == 'sequences' and 'frames' not in rep


def test_frame_calibration_lowers_ece():
    "Per frame: bouts whose frames carry an over-confident model's probabilities, each frame's truth its bout's class."
    rng = np.random.default_rng(1)
    k = rng.integers(2, 9, 3000); q = rng.dirichlet(np.full(4, 0.5), 3000); yb = np.array([rng.choice(4, p=v) for v in q])
    noise = [rng.normal(0, 0.02, (n, 4)) for n in k]               # a little frame-to-frame jitter of the log-probabilities
    frames = [L.temperature_scale(np.exp(np.log(v) + e), 0.3) for v, e in zip(q, noise)]
    cv = dict(classes=list('abcd'),
              predictions=[dict(fold=i % 4, true='abcd'[t], p=list(f.mean(0) / f.mean(0).sum()), start=0, end=int(n))
                           for i, (t, f, n) in enumerate(zip(yb, frames, k))],
              frame_predictions=[dict(video=f'v{i}', fold=i % 4, true='abcd'[t], p=f.tolist()) for i, (t, f) in enumerate(zip(yb, frames))])
    rep = L.calibration_report(cv); fr = rep['frames']
    assert rep['headline'] == 'frames' and fr['n_frames'] == k.sum() and fr['n_sequences'] == 3000
    P, y = np.concatenate(frames), np.repeat(yb, k)
    assert fr['ece_before'] == pytest.approx(L.ece(P, y)) and fr['accuracy'] == pytest.approx((P.argmax(1) == y).mean())
    assert fr['ece_before'] > 0.15 and fr['ece_after'] < 0.05 and 2.5 < fr['temperature'] < 4.5
    assert fr['ece_after_ci95'][0] <= fr['ece_after'] <= fr['ece_after_ci95'][1] and fr['ece_floor'] < fr['ece_after_ci95'][1]
    assert set(fr['temperatures']) == set(fr['thresholds']) == {'0', '1', '2', '3'}
    # the held-out precision and share unsure are those of the per-fold thresholds on the calibrated frames
    f = np.repeat(np.arange(3000) % 4, k); keep = np.zeros(len(y), bool); Pc = np.empty_like(P)
    for j in range(4):
        Pc[f == j] = L.temperature_scale(P[f == j], fr['temperatures'][str(j)])
        keep[f == j] = Pc[f == j].max(1) >= fr['thresholds'][str(j)]
    assert fr['ece_after'] == pytest.approx(L.ece(Pc, y))
    assert fr['unsure'] == pytest.approx(1 - keep.mean()) and 0 < fr['unsure'] < 1
    assert fr['precision'] == pytest.approx((Pc.argmax(1) == y)[keep].mean()) and fr['precision'] > 0.85
    assert len(fr['curve']['threshold']) == 41 and fr['curve']['coverage'][0] == 1.0


def test_live_with_the_model_that_ships(video, tmp_path, capsys):
    "Without MODEL, `live` uses the model that ships (as `predict` does): its classes, one row per frame; a file's body area measured first."
    import json
    from mousebehav.cli import main
    out = tmp_path/'s.csv'
    assert main(['live', '--source', str(video), '--out', str(out), '--max-frames', '90', '--quiet']) == 0
    ba = L.measure_body_area(video, stop=90)
    cap = capsys.readouterr()
    assert f'body area {ba:.0f} px (file)' in cap.out
    assert 'unsure of most frames' in cap.err                       # filmed from above: unlike the videos it learnt from
    card = json.loads(FM.card_path(FM.default_model_path()).read_text())
    df = pd.read_csv(out)
    assert df.frame.tolist() == list(range(90))
    assert [c[2:] for c in df.columns if c.startswith('p_')] == FM.load_default_model().classes
    assert set(df.label) <= set(card['classes'])
    assert main(['live', str(tmp_path/'none.skops'), '--source', str(video), '--out', str(tmp_path/'n.csv'), '--quiet']) == 2
    assert not (tmp_path/'n.csv').exists()


@pytest.fixture(scope='module')
def pm_model(tmp_path_factory): return _clips_model(tmp_path_factory.mktemp('live_pm'), 'posture+motion')


def test_online_equals_offline_with_motion(pm_model, video, tmp_path):
    "A posture+motion model at the video's own rate: the clips are 5 fps, so the open field is read at 5 fps (every frame its own block)."
    import cv2
    from mousebehav.video import iter_frames
    small = tmp_path/'of5.avi'                                       # the open field at 5 fps: every 6th frame, as a 5 fps video
    w = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (640, 480))
    for i, f in iter_frames(video):
        if i % 6 == 0: w.write(f)
    w.release()
    off = E.predict_video(pm_model, small, features_dir=tmp_path/'vf', threshold=0.4, min_frames=3, causal=True)
    on, oc = L.classify_video(pm_model, small, body_area=L.measure_body_area(small), threshold=0.4, min_frames=3)
    assert oc.motion is not None and oc.stride == 1 and len(on) == len(off) == 389
    assert on.label.tolist() == off.label.tolist() and off.label.nunique() > 1
    assert np.abs(on.filter(like='p_').values - off.filter(like='p_').values).max() <= 1e-6
    assert (on.delay_s <= oc.delay_s + 1e-6).iloc[60:-60].all()      # after the first 10 s (body and head), within the lag


def test_live_refuses_other_inputs(model, tmp_path):
    fm = FM.load_frame_model(model); fm.backbone = 'efficientnet_lite0'
    with pytest.raises(L.LiveError, match='posture or posture\\+motion'):
        L.OnlineClassifier(fm, 30.0, (640, 480))


def test_motion_model_at_another_frame_rate_is_refused(pm_model):
    with pytest.raises(L.LiveError, match='frame rate it was trained at'):
        L.OnlineClassifier(pm_model, 30.0, (640, 480))


def test_predict_with_a_motion_model_at_another_frame_rate_says_why(pm_model, video, tmp_path, capsys):
    "Offline the same: the 5 fps motion model on the 30 fps open field is refused with the reason before any extraction."
    from mousebehav.cli import main
    out = tmp_path/'eth.csv'
    assert main(['predict', str(pm_model), str(video), '--out', str(out), '--features-dir', str(tmp_path/'f')]) == 2
    err = capsys.readouterr().err
    assert 'frame rate it was trained at' in err and 'Traceback' not in err and not out.exists()
    assert not (tmp_path/'f').exists() or not list((tmp_path/'f').rglob('*.h5'))     # nothing extracted


def test_a_camera_body_area_that_the_stream_does_not_bear_out_warns(model, video):
    "Measured over the first 10 s as a camera's would be, the open field's body area (the mask runs into the wall) is far from the rest's."
    import warnings
    from mousebehav import segment as SG
    from mousebehav.video import iter_frames
    oc = L.OnlineClassifier(model, 30.0, (640, 480), SG.Segmenter('imbs', fps=30.0).prime_from_video(video))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for i, f in iter_frames(video, stop=1200): oc.step(f, i)
    msgs = [str(x.message) for x in w if issubclass(x.category, L.LiveWarning)]
    assert len(msgs) == 1 and '--body-area' in msgs[0], msgs
    assert oc.posture.ma > 1.25 * L.measure_body_area(video)       # … and rightly: the whole video's is far smaller


def test_a_stream_without_a_mouse_is_refused(field_cases, tmp_path, capsys):
    "One frame (nothing to subtract a background from), body area given so that nothing stops it earlier: an error, no CSV."
    from mousebehav.cli import main
    out = tmp_path/'one.csv'
    assert main(['live', '--source', str(field_cases/'one.avi'), '--out', str(out), '--body-area', '800', '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'no mouse was found in any of the 1 frames' in err and 'Traceback' not in err, err
    assert not out.exists() and not (tmp_path/'one_bouts.csv').exists()
    assert main(['live', '--source', str(field_cases/'one.avi'), '--out', str(out), '--quiet']) == 2   # measured: the same
    assert 'no mouse was found in any of its frames' in capsys.readouterr().err and not out.exists()
