"""`mousebehav train/evaluate/predict --sessions`: a session file (session, view, features[, sync]) → a session model
→ metrics and an ethogram that says which views each frame's label came from; bad session files, label rows and
options refused by name (exit 2, no traceback); the one-video commands unchanged."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mousebehav.cli import main
from mousebehav.multiview import SessionModel, is_session_model, read_session_file
from mousebehav.sync import CameraSync, SyncResult, write_sync
from mousebehav.store import write_store

CLASSES = ['face_groom', 'locomote', 'rearing']
N = 360                    # frames per session (12 s at 30 fps)


def truth_of(seed: int) -> np.ndarray:
    "Per-frame behaviour: bouts of 20-40 frames, each class in turn from a random start."
    rng = np.random.default_rng(seed); y = np.zeros(N, int); t, k = 0, int(rng.integers(3))
    while t < N:
        d = int(rng.integers(20, 41)); y[t:t + d] = k; t += d; k = (k + 1) % 3
    return y


def toy_view(path, y, video, seed, shift=0, lost=(), n_frames=None):
    """A store of one view whose two features tell the classes apart (class mean + noise); `shift`: this camera's
    frame k shows reference frame k - shift; `lost`: reference frames in which it does not see the mouse."""
    rng = np.random.default_rng(seed)
    n = n_frames or N
    ref = np.arange(n) - shift                           # reference frame each of its frames shows
    cls = y[np.clip(ref, 0, N - 1)]
    x = np.array([[0, 0], [3, 0], [0, 3]], np.float32)[cls] + rng.normal(0, 0.7, (n, 2)).astype(np.float32)
    det = ~np.isin(ref, list(lost))
    return write_store(Path(path), dict(backbone='toy', columns=json.dumps(['f0', 'f1']), feature_dim=2, video_name=video,
                                         video_fps=30.0, video_frame_count=n),
                        x, np.arange(n), np.full((n, 4), -1, np.int32), det)


def label_rows(y, session):
    "The bouts of `y` as session label rows."
    cut = np.r_[0, np.flatnonzero(np.diff(y)) + 1, len(y)]
    return [dict(session=session, start_frame=int(a), end_frame=int(b), behavior=CLASSES[y[a]], fold=0) for a, b in zip(cut[:-1], cut[1:])]


@pytest.fixture(scope='module')
def rig(tmp_path_factory):
    "Two sessions of three views (top, side, front) as stores, a session file naming them, train and test label tables."
    d = tmp_path_factory.mktemp('sessions')
    (d/'stores').mkdir()
    ys = {'day1': truth_of(1), 'day2': truth_of(2)}
    lost = {'top': range(100, 130), 'side': range(115, 145), 'front': range(300, 320)}
    rows = []
    for i, (s, y) in enumerate(ys.items()):
        for j, v in enumerate(('top', 'side', 'front')):
            toy_view(d/'stores'/f'{s}_{v}.h5', y, f'{s}_{v}.avi', 10 * i + j, lost=lost[v])
            rows.append(dict(session=s, view=v, features=f'stores/{s}_{v}.h5'))
    pd.DataFrame(rows).to_csv(d/'sessions.csv', index=False)
    pd.DataFrame(label_rows(ys['day1'], 'day1')).to_csv(d/'train.csv', index=False)
    pd.DataFrame(label_rows(ys['day2'], 'day2')).to_csv(d/'test.csv', index=False)
    return d, ys


@pytest.mark.parametrize('fusion', ['late', 'early'])
def test_train_evaluate_predict_a_session(rig, tmp_path, capsys, fusion):
    d, ys = rig
    model = tmp_path/'views.skops'
    assert main(['train', '--sessions', str(d/'sessions.csv'), '--labels', str(d/'train.csv'), '--fusion', fusion,
                 '--out', str(model)]) == 0
    assert 'session model written to' in capsys.readouterr().out
    m = SessionModel.load(model)
    assert is_session_model(model) and (m.kind, m.fusion, m.views, m.classes, m.fps) == ('session', fusion, ['top', 'side', 'front'], CLASSES, 30.0)

    assert main(['evaluate', str(model), '--sessions', str(d/'sessions.csv'), '--labels', str(d/'test.csv'), '--out', str(tmp_path/'ev')]) == 0
    out = capsys.readouterr().out
    assert 'sequences: accuracy' in out and 'frame accuracy' in out
    mj = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    # the keys of the one-video evaluate's metrics.json
    assert {'accuracy', 'macro_f1', 'n', 'classes', 'per_class', 'confusion', 'n_sequences', 'skipped_rows', 'skipped',
            'predictions', 'model', 'labels'} <= set(mj)
    assert (tmp_path/'ev'/'confusion.png').stat().st_size > 1000
    assert mj['n_sequences'] == len(label_rows(ys['day2'], 'day2')) and mj['skipped_rows'] == 0
    assert mj['accuracy'] > 0.9 and mj['frames']['accuracy'] > 0.85, (mj['accuracy'], mj['frames'])   # chance 1/3
    assert mj['frames']['unseen'] == 0 and mj['views'] == m.views

    # all trained views: every frame is seen by one; with top and side only, frames 115-129 are seen by neither
    eth = tmp_path/'day2.csv'
    assert main(['predict', str(model), '--sessions', str(d/'sessions.csv'), '--session', 'day2', '--out', str(eth)]) == 0
    t = pd.read_csv(eth, keep_default_na=False)
    assert list(t.columns) == ['frame', 'time_s', 'label', *[f'p_{c}' for c in CLASSES], 'views', 'n_views']
    assert (t.label != '').all() and t.views.iloc[120] == 'front' and t.views.iloc[0] == 'top+side+front'
    assert np.allclose(t.time_s, t.frame / 30) and (t.label == np.array(CLASSES)[ys['day2']]).mean() > 0.85
    assert main(['predict', str(model), '--sessions', str(d/'sessions.csv'), '--session', 'day2', '--views', 'top,side',
                 '--out', str(eth)]) == 0
    t = pd.read_csv(eth, keep_default_na=False)
    none = np.isin(t.frame, range(115, 130))
    assert (t.label[none] == '').all() and (t.views[none] == '').all() and (t.n_views[none] == 0).all()
    assert (t.label[~none] != '').all() and set(t.views[~none]) == {'top', 'side', 'top+side'}
    assert t.loc[none, [f'p_{c}' for c in CLASSES]].eq('').all().all()
    b = pd.read_csv(tmp_path/'day2_bouts.csv', keep_default_na=False)
    assert list(b.columns) == ['behavior', 'start', 'end', 'duration', 'mean_probability', 'start_frame', 'end_frame']
    gap = b[b.behavior == '']
    assert gap[['start_frame', 'end_frame']].values.tolist() == [[115, 130]] and b.end_frame.iloc[-1] == N


def test_a_view_missing_from_the_session(rig, tmp_path):
    "A session file without one of the trained views: labelled from the others, the missing one never named."
    d, ys = rig
    assert main(['train', '--sessions', str(d/'sessions.csv'), '--labels', str(d/'train.csv'), '--out', str(tmp_path/'m.skops')]) == 0
    pd.DataFrame(dict(session='day2', view=['side', 'front'], features=[str(d/'stores'/'day2_side.h5'), str(d/'stores'/'day2_front.h5')])
                 ).to_csv(tmp_path/'two.csv', index=False)
    assert main(['predict', str(tmp_path/'m.skops'), '--sessions', str(tmp_path/'two.csv'), '--out', str(tmp_path/'e.csv')]) == 0
    t = pd.read_csv(tmp_path/'e.csv', keep_default_na=False)
    assert (t.label != '').all() and set(t.views) == {'side', 'front', 'side+front'} and not t.views.str.contains('top').any()
    assert (t.label == np.array(CLASSES)[ys['day2']]).mean() > 0.85
    assert main(['evaluate', str(tmp_path/'m.skops'), '--sessions', str(tmp_path/'two.csv'), '--labels', str(d/'test.csv')]) == 0


def test_a_session_through_its_sync(tmp_path, capsys):
    "Camera b started 6 frames after a: through the sync the views line up; the sync in the wrong order is refused."
    from mousebehav.video import write_video
    y = truth_of(3)
    vids = [write_video(tmp_path/f'{v}.avi', (np.zeros((24, 32, 3), np.uint8) for _ in range(N)), 30.0) for v in 'ab']
    toy_view(tmp_path/'a.h5', y, 'a.avi', 1); toy_view(tmp_path/'b.h5', y, 'b.avi', 2, shift=-6)   # b's frame k = a's k + 6
    write_sync(SyncResult([CameraSync(str(vids[0]), 30, N, 0, 0, 1, 1, 'reference', 30),
                           CameraSync(str(vids[1]), 30, N, -6, -0.2, 1, 1, 'motion', 30)]), tmp_path/'sync.csv')
    pd.DataFrame(dict(session='s', view=['a', 'b'], features=['a.h5', 'b.h5'], sync=['sync.csv', ''])).to_csv(tmp_path/'sessions.csv', index=False)
    pd.DataFrame(label_rows(y, 's')).to_csv(tmp_path/'labels.csv', index=False)
    assert main(['train', '--sessions', str(tmp_path/'sessions.csv'), '--labels', str(tmp_path/'labels.csv'), '--out', str(tmp_path/'m.skops')]) == 0
    assert main(['predict', str(tmp_path/'m.skops'), '--sessions', str(tmp_path/'sessions.csv'), '--views', 'b', '--out', str(tmp_path/'e.csv')]) == 0
    t = pd.read_csv(tmp_path/'e.csv', keep_default_na=False)
    assert (t.label[:6] == '').all() and (t.views[6:] == 'b').all()           # b's first frame is a's frame 6
    assert (t.label[6:] == np.array(CLASSES)[y[6:]]).mean() > 0.85
    pd.DataFrame(dict(session='s', view=['b', 'a'], features=['b.h5', 'a.h5'], sync=['sync.csv', ''])).to_csv(tmp_path/'swapped.csv', index=False)
    capsys.readouterr()
    assert main(['predict', str(tmp_path/'m.skops'), '--sessions', str(tmp_path/'swapped.csv'), '--out', str(tmp_path/'x.csv')]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path/'swapped.csv'}, session 's' (rows 2, 3): view 0: b.avi, but the sync result's video 0 is a.avi" in err
    assert not (tmp_path/'x.csv').exists()


def _fails(capsys, argv, *texts):
    "The command exits with 2 and one error line naming `texts`, no traceback."
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert 'Traceback' not in err and err.startswith('mousebehav: error: '), err
    for s in texts: assert s in err, (s, err)


def test_session_file_errors(rig, tmp_path, capsys):
    d, _ = rig
    st = d/'stores'
    (tmp_path/'video.h5').write_text('not a store')
    (tmp_path/'bad.csv').write_text('session,view,features,sync\n'
                                    f'day1,top,{st}/day1_top.h5,\n'
                                    f'day1,top,{st}/day1_side.h5,\n'        # 3: view given twice
                                    'day1,side,none.h5,\n'                  # 4: no such store
                                    f'day2,top,{st}/day1_top.h5,\n'         # 5: a view of another session
                                    'day2,side,video.h5,\n'                 # 6: not a feature store
                                    f'day2,front,{st}/day2_front.h5,nosync.csv\n'   # 7: no such sync file
                                    ',front,x.h5,\n')                       # 8: empty session
    with pytest.raises(Exception) as e: read_session_file(tmp_path/'bad.csv')
    msg = str(e.value)
    assert msg.startswith(f"6 bad row(s) in {tmp_path/'bad.csv'}")
    for s in ["row 3: view 'top' of session 'day1' is given twice (rows 2 and 3)", "row 4: none.h5: no such feature store",
              f"row 5: {st}/day1_top.h5 is already view 'top' of session 'day1' (row 2): views of different sessions",
              "row 6: video.h5: not a feature store", "row 7: nosync.csv: no such sync file", "row 8: empty session"]:
        assert s in msg, (s, msg)
    lab = str(d/'train.csv')
    _fails(capsys, ['train', '--sessions', str(tmp_path/'bad.csv'), '--labels', lab, '--out', str(tmp_path/'m.skops')],
           'bad row(s) in', 'row 4: none.h5: no such feature store')
    _fails(capsys, ['train', '--sessions', str(tmp_path/'none.csv'), '--labels', lab, '--out', str(tmp_path/'m.skops')],
           'none.csv: no such session file')
    (tmp_path/'cols.csv').write_text('session,camera,store\nday1,top,x.h5\n')
    _fails(capsys, ['train', '--sessions', str(tmp_path/'cols.csv'), '--labels', lab, '--out', str(tmp_path/'m.skops')],
           'missing column(s) view, features')
    assert not (tmp_path/'m.skops').exists()


def test_session_label_and_option_errors(rig, tmp_path, capsys):
    d, _ = rig
    s, lab, m = str(d/'sessions.csv'), str(d/'train.csv'), str(tmp_path/'m.skops')
    (tmp_path/'labels.csv').write_text('session,views,start_frame,end_frame,behavior,fold\n'
                                       'day1,top;back,0,30,rearing,0\n'
                                       ',day1_top.avi;day2_side.avi,0,30,rearing,0\n'
                                       'day9,,0,30,rearing,0\n')
    _fails(capsys, ['train', '--sessions', s, '--labels', str(tmp_path/'labels.csv'), '--out', m],
           "row 2: unknown view 'back'", "row 3: views of different sessions", "row 4: unknown session 'day9'")
    _fails(capsys, ['train', '--sessions', s, '--labels', lab, '--classes', 'coarse', '--out', m], '--classes: not used with --sessions')
    _fails(capsys, ['train', str(d/'stores'/'day1_top.h5'), '--sessions', s, '--labels', lab, '--out', m], 'FEATURES')
    _fails(capsys, ['train', '--labels', lab, '--out', m], 'train needs feature stores (FEATURES), or a session file (--sessions)')
    _fails(capsys, ['train', str(d/'stores'/'day1_top.h5'), '--fusion', 'early', '--labels', lab, '--out', m], '--fusion: an option of --sessions')
    assert main(['train', '--sessions', s, '--labels', lab, '--out', m]) == 0
    _fails(capsys, ['predict', m, '--sessions', s, '--out', str(tmp_path/'e.csv')], 'has 2 sessions (day1, day2): name one with --session')
    _fails(capsys, ['predict', m, '--sessions', s, '--session', 'day7', '--out', str(tmp_path/'e.csv')], "no session 'day7' (its sessions: day1, day2)")
    _fails(capsys, ['predict', m, '--sessions', s, '--session', 'day1', '--views', 'top,back', '--out', str(tmp_path/'e.csv')],
           "session 'day1' has no view 'back' (its views: top, side, front)")
    _fails(capsys, ['predict', m, '--session', 'day1', '--out', str(tmp_path/'e.csv')], 'give the session file too (--sessions FILE)')
    # a session model where a one-video model is expected, and the other way round
    _fails(capsys, ['predict', m, str(tmp_path/'video.mp4'), '--out', str(tmp_path/'e.csv')], 'a session model (several views)')
    _fails(capsys, ['evaluate', m, str(d/'stores'/'day1_top.h5'), '--labels', lab], 'a session model (several views)')
    _fails(capsys, ['evaluate', m, '--labels', lab], 'evaluate needs feature stores (FEATURES), or a session file (--sessions)')
    (tmp_path/'table.skops').write_text('not a model')
    _fails(capsys, ['predict', str(tmp_path/'table.skops'), '--sessions', s, '--session', 'day1', '--out', str(tmp_path/'e.csv')],
           'not a session model')
    assert not (tmp_path/'e.csv').exists()
    # a session with a view the model never saw
    pd.DataFrame(dict(session='x', view=['top', 'back'], features=[str(d/'stores'/'day1_top.h5'), str(d/'stores'/'day2_top.h5')])
                 ).to_csv(tmp_path/'back.csv', index=False)
    _fails(capsys, ['predict', m, '--sessions', str(tmp_path/'back.csv'), '--out', str(tmp_path/'e.csv')],
           "view(s) back unknown to the model (trained on top, side, front)")
    assert main(['predict', m, '--sessions', str(tmp_path/'back.csv'), '--views', 'top', '--out', str(tmp_path/'e.csv')]) == 0


def test_few_frames_seen_warns_none_refused_and_threshold(rig, tmp_path, capsys):
    d, ys = rig
    m = str(tmp_path/'m.skops')
    assert main(['train', '--sessions', str(d/'sessions.csv'), '--labels', str(d/'train.csv'), '--out', m]) == 0
    toy_view(tmp_path/'top.h5', ys['day2'], 'top.avi', 5, lost=range(0, 250))          # sees the mouse in 110 of 360 frames
    toy_view(tmp_path/'blind.h5', ys['day2'], 'blind.avi', 6, lost=range(N))
    pd.DataFrame(dict(session='s', view=['top', 'side'], features=['top.h5', 'blind.h5'])).to_csv(tmp_path/'few.csv', index=False)
    capsys.readouterr()
    assert main(['predict', m, '--sessions', str(tmp_path/'few.csv'), '--out', str(tmp_path/'e.csv')]) == 0
    assert "mousebehav: warning: session 's': the views see the mouse in only 31% of its frames" in capsys.readouterr().err
    _fails(capsys, ['predict', m, '--sessions', str(tmp_path/'few.csv'), '--views', 'side', '--out', str(tmp_path/'x.csv')],
           "session 's': no view sees the mouse in any of its 360 frames: nothing to label")
    assert not (tmp_path/'x.csv').exists()
    # stabilised: fewer label switches, the same frames labelled
    args = ['predict', m, '--sessions', str(d/'sessions.csv'), '--session', 'day2']
    assert main(args + ['--out', str(tmp_path/'raw.csv')]) == 0 and main(args + ['--threshold', '0.9', '--out', str(tmp_path/'st.csv')]) == 0
    raw, st = (pd.read_csv(tmp_path/f, keep_default_na=False) for f in ('raw.csv', 'st.csv'))
    switches = lambda t: int((t.label.to_numpy()[1:] != t.label.to_numpy()[:-1]).sum())
    assert switches(st) < switches(raw) and ((st.label == '') == (raw.label == '')).all()
